package main

import (
	"github.com/postern/postern/config"
	"net/netip"
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
			if first, second := config.RelayIPs(s); [2]netip.Addr{first, second} != tc.want {
				got := [2]netip.Addr{first, second}
				t.Errorf("relay IPs %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDefaultFamilySetting: [relay] default_family.
func TestDefaultFamilySetting(t *testing.T) {
	for value, want := range map[string]relay.Family{"ipv4": relay.FamilyIPv4, "IPv6": relay.FamilyIPv6, "keep": relay.FamilyKeep} {
		s, err := settingsFor(t, "--config", writeFile(t, "c.toml", "[relay]\ndefault_family = \""+value+"\"\n"))
		if got := relayOf(s).DefaultFamily; err != nil || got != want {
			t.Errorf("default_family %q: %v (%v), want %v", value, got, err, want)
		}
	}
	if _, err := settingsFor(t, "--config", writeFile(t, "c.toml", "[relay]\ndefault_family = \"ipx\"\n")); err == nil ||
		!strings.Contains(err.Error(), "relay.default_family") {
		t.Errorf("default_family ipx: %v, want an error naming relay.default_family", err)
	}
}
