package cluster

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

// FuzzRegistryEntry feeds what another node (or anyone with write access
// to Redis) may have written as a registry entry through the decoding
// and the choices made from it: never a panic, and never a node that is
// draining, silent or without URLs.
func FuzzRegistryEntry(f *testing.F) {
	f.Add([]byte(`{"node":"a","region":"eu","state":"ready","allocations":3,"urls":["turn:192.0.2.1:3478?transport=udp","turns:[2001:db8::1]:443?transport=tcp"],"updated":"2030-01-01T00:00:00Z"}`), "udp", "192.0.2.9")
	f.Add([]byte(`{"node":"b","state":"draining","urls":["turn:[::1]"],"updated":"2030-01-01T00:00:00Z"}`), "tls", "::1")
	f.Add([]byte(`{"node":"c","state":"ready","urls":["turn:host.example:x?transport=tcp","turn:","turns:1.2.3.4"]}`), "tcp", "10.0.0.1")
	f.Fuzz(func(t *testing.T, entry []byte, transport, client string) {
		var info Info
		if json.Unmarshal(entry, &info) != nil {
			return
		}
		since := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
		for _, got := range pick([]Info{info}, info.Region, 2, since, "") {
			if got.State != StateReady || len(got.URLs) == 0 || got.Updated.Before(since) {
				t.Fatalf("picked %+v", got)
			}
		}
		ip, _ := netip.ParseAddr(client)
		for _, a := range Addresses(info.URLs, transport) {
			if !a.IsValid() || a.Addr().Is4In6() {
				t.Fatalf("address %v from %q", a, info.URLs)
			}
			_ = addrFamilyMatches(a, ip)
		}
	})
}

// FuzzRegionRules: region_rules never panics, and a parsed rule maps the
// addresses of its prefix to its region.
func FuzzRegionRules(f *testing.F) {
	f.Add("10.0.0.0/8=eu,2001:db8::/32=us", "10.1.2.3")
	f.Add(" 10.9.0.0/16 = eu , ,", "::ffff:10.9.0.1")
	f.Add("=,=x,1.2.3.4/33=a", "1.2.3.4")
	f.Fuzz(func(t *testing.T, rules, client string) {
		rs, err := ParseRegionRules(rules)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Region == "" || !r.Prefix.IsValid() {
				t.Fatalf("rule %+v from %q", r, rules)
			}
		}
		if ip, err := netip.ParseAddr(client); err == nil {
			_ = regionOf(rs, ip)
		}
	})
}
