package relay

import (
	"net/netip"
	"strings"
	"testing"
)

// TestRelayIPFor: which relay address of each family a listener's
// allocations get.
func TestRelayIPFor(t *testing.T) {
	a := netip.MustParseAddr
	primary := relayIPs{v4: a("192.0.2.1"), v6: a("2001:db8::1")}
	loop := relayIPs{v4: a("127.0.0.1"), v6: a("::1")}
	s := &Server{primary: primary}
	for spec, want := range map[string]relayIPs{
		":3478":              primary,
		"[::]:3478":          primary,
		"0.0.0.0:3478":       primary,
		"[::1]:3478":         loop, // the relay IP for IPv6 when the listener is [::1] is ::1
		"127.0.0.1:3478":     loop,
		"localhost:3478":     loop,
		"10.0.0.5:3478":      {v4: a("10.0.0.5"), v6: a("2001:db8::1")},
		"[2001:db8::5]:3478": {v4: a("192.0.2.1"), v6: a("2001:db8::5")},
	} {
		if got := s.relayIPFor(ListenSpec{Kind: UDP, Addr: spec}); got != want {
			t.Errorf("%s: %+v, want %+v", spec, got, want)
		}
	}
	s.relayCfg = relayIPs{v6: a("2001:db8::9")}
	if got := s.relayIPFor(ListenSpec{Kind: UDP, Addr: "127.0.0.1:3478"}); got != s.relayCfg {
		t.Errorf("configured: %+v, want %+v", got, s.relayCfg)
	}
}

// TestConfiguredRelayIPs: RelayIP and RelayIPs give at most one address of
// each family.
func TestConfiguredRelayIPs(t *testing.T) {
	a := netip.MustParseAddr
	got, err := configuredRelayIPs(&Config{RelayIP: a("::ffff:192.0.2.1"), RelayIPs: []netip.Addr{a("2001:db8::1")}})
	if err != nil || got != (relayIPs{v4: a("192.0.2.1"), v6: a("2001:db8::1")}) {
		t.Errorf("%+v, %v", got, err)
	}
	for _, cfg := range []Config{
		{RelayIP: a("192.0.2.1"), RelayIPs: []netip.Addr{a("192.0.2.2")}},
		{RelayIPs: []netip.Addr{a("2001:db8::1"), a("2001:db8::2")}},
		{RelayIP: a("::")},
	} {
		if _, err := configuredRelayIPs(&cfg); err == nil || !strings.Contains(err.Error(), "relay") {
			t.Errorf("%+v: %v, want an error", cfg, err)
		}
	}
}
