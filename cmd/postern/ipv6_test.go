package main

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/postern/postern/relay"
)

// TestRelayIPFamilies: --relay-ip and relay.ip take one address of each
// family, repeated, comma-separated or as a TOML list; a single string
// still works; two of one family is an error.
func TestRelayIPFamilies(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	for _, tc := range []struct {
		name     string
		args     []string
		toml     string
		want     [2]netip.Addr
		wantFail string
	}{
		{name: "one flag", args: []string{"--relay-ip", "192.0.2.10"}, want: [2]netip.Addr{v4}},
		{name: "IPv6 only", args: []string{"--relay-ip", "2001:db8::10"}, want: [2]netip.Addr{v6}},
		{name: "flag twice", args: []string{"--relay-ip", "2001:db8::10", "--relay-ip", "192.0.2.10"}, want: [2]netip.Addr{v4, v6}},
		{name: "comma list", args: []string{"--relay-ip", "192.0.2.10, 2001:db8::10"}, want: [2]netip.Addr{v4, v6}},
		{name: "TOML string", toml: `ip = "192.0.2.10"`, want: [2]netip.Addr{v4}},
		{name: "TOML list", toml: `ip = ["192.0.2.10", "2001:db8::10"]`, want: [2]netip.Addr{v4, v6}},
		{name: "flag replaces TOML", toml: `ip = ["192.0.2.10", "2001:db8::10"]`, args: []string{"--relay-ip", "2001:db8::10"}, want: [2]netip.Addr{v6}},
		{name: "two IPv4", args: []string{"--relay-ip", "192.0.2.10,192.0.2.11"}, wantFail: "one address of each family"},
		{name: "TOML number", toml: `ip = 5`, wantFail: "relay.ip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.toml != "" {
				args = append([]string{"--config", writeFile(t, "c.toml", "[relay]\n"+tc.toml+"\n")}, args...)
			}
			s, err := settingsFor(t, args...)
			if tc.wantFail != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantFail) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantFail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := [2]netip.Addr{s.relayIP, s.relayIP6}; got != tc.want {
				t.Errorf("relay IPs %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDefaultFamilySetting: [relay] default_family.
func TestDefaultFamilySetting(t *testing.T) {
	for value, want := range map[string]relay.Family{"ipv4": relay.FamilyIPv4, "IPv6": relay.FamilyIPv6, "keep": relay.FamilyKeep} {
		s, err := settingsFor(t, "--config", writeFile(t, "c.toml", "[relay]\ndefault_family = \""+value+"\"\n"))
		if err != nil || s.defaultFamily != want {
			t.Errorf("default_family %q: %v (%v), want %v", value, s.defaultFamily, err, want)
		}
	}
	if _, err := settingsFor(t, "--config", writeFile(t, "c.toml", "[relay]\ndefault_family = \"ipx\"\n")); err == nil ||
		!strings.Contains(err.Error(), "relay.default_family") {
		t.Errorf("default_family ipx: %v, want an error naming relay.default_family", err)
	}
}

// TestICEServersIPv6: a listener on every address is also listed with the
// host's global IPv6 address (turn:[2001:db8::1]:3478?transport=udp), for
// clients on IPv6-only networks; not for a listener on one IPv4 address,
// not with a ULA or link-local address, and an IPv6 relay address wins
// over the primary one.
func TestICEServersIPv6(t *testing.T) {
	udpAll := relay.BoundListener{Kind: relay.UDP, Addr: &net.UDPAddr{IP: net.IPv6unspecified, Port: 3478}}
	tcp4 := relay.BoundListener{Kind: relay.TCP, Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 3478}}
	primary := func(s string) func() (netip.Addr, error) {
		return func() (netip.Addr, error) { return netip.MustParseAddr(s), nil }
	}
	for _, tc := range []struct {
		name   string
		policy hostPolicy
		want   []string
		absent []string
	}{
		{
			name:   "global primary IPv6",
			policy: hostPolicy{primary: primary("192.0.2.1"), primary6: primary("2001:db8::1")},
			want:   []string{"turn:192.0.2.1:3478?transport=udp", "turn:[2001:db8::1]:3478?transport=udp", "stun:[2001:db8::1]:3478", "turn:192.0.2.1:3478?transport=tcp"},
			absent: []string{"turn:[2001:db8::1]:3478?transport=tcp"},
		},
		{
			name:   "ULA is not listed",
			policy: hostPolicy{primary: primary("192.0.2.1"), primary6: primary("fd00::2")},
			absent: []string{"turn:[fd00::2]:3478?transport=udp"},
		},
		{
			name:   "IPv6 relay address",
			policy: hostPolicy{relay: netip.MustParseAddr("192.0.2.9"), relay6: netip.MustParseAddr("2001:db8::9"), primary6: primary("2001:db8::1")},
			want:   []string{"turn:192.0.2.9:3478?transport=udp", "turn:[2001:db8::9]:3478?transport=udp"},
			absent: []string{"turn:[2001:db8::1]:3478?transport=udp"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps, err := endpoints([]relay.BoundListener{udpAll, tcp4}, tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			urls := iceURLs(eps)
			for _, u := range tc.want {
				if !slices.Contains(urls, u) {
					t.Errorf("%q missing from %q", u, urls)
				}
			}
			for _, u := range tc.absent {
				if slices.Contains(urls, u) {
					t.Errorf("%q listed in %q", u, urls)
				}
			}
		})
	}
	// From the configuration (postern ice-servers): a listener written
	// without a host is on every address of both families.
	eps, err := specEndpoints([]relay.ListenSpec{{Kind: relay.UDP, Addr: ":3478"}, {Kind: relay.UDP, Addr: "0.0.0.0:3479"}}, "",
		hostPolicy{primary: primary("192.0.2.1"), primary6: primary("2001:db8::1")})
	if err != nil {
		t.Fatal(err)
	}
	urls := iceURLs(eps)
	if !slices.Contains(urls, "turn:[2001:db8::1]:3478?transport=udp") || slices.Contains(urls, "turn:[2001:db8::1]:3479?transport=udp") {
		t.Errorf("from specs: %q, want the IPv6 URL for :3478 only", urls)
	}
}
