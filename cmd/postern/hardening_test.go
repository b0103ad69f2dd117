package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
)

func TestHardeningValidation(t *testing.T) {
	for _, tc := range []struct{ toml, mention string }{
		{"[limits]\nip_quota = -1", "limits.ip_quota (--ip-quota)"},
		{"[limits]\nunauthenticated_rate = -2.0", "limits.unauthenticated_rate"},
		{"[limits]\nbinding_rate = -1.0", "limits.binding_rate (--binding-rate)"},
		{"[limits]\nbinding_burst = -1", "limits.binding_burst (--binding-burst)"},
		{"[limits]\nmax_conns_per_ip = -5", "limits.max_conns_per_ip"},
		{"[limits]\nidle_timeout = \"-1s\"", "limits.idle_timeout"},
		{"[drain]\nalternate_server = \"turn.example.org\"", "drain.alternate_server (--alternate-server)"},
	} {
		path := writeFile(t, "postern.toml", tc.toml)
		c, err := config.Load(path)
		if err == nil {
			_, err = config.Resolve(config.Settings(), c)
		}
		if err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%q: error %v, want one naming %q", tc.toml, err, tc.mention)
		}
	}
}

// TestHardeningFlags: every abuse-limit and drain flag overrides the file,
// and 0 given on the command line turns a default limit off.
func TestHardeningFlags(t *testing.T) {
	path := writeFile(t, "postern.toml", "[limits]\nip_quota = 7\nmax_conns = 5\n")
	s, err := settingsFor(t, "--config", path,
		"--ip-quota", "2", "--total-quota", "9", "--allocation-bandwidth", "1000", "--user-bandwidth", "2000",
		"--unauthenticated-rate", "0", "--unauthenticated-burst", "3", "--binding-rate", "7.5", "--binding-burst", "8",
		"--max-conns", "0", "--max-conns-per-ip", "4",
		"--handshake-timeout", "3s", "--idle-timeout", "4s", "--alternate-server", "192.0.2.1:3478", "--drain-timeout", "5s")
	if err != nil {
		t.Fatal(err)
	}
	var got relay.Config
	config.Apply(config.Settings(), s, &got)
	want := relay.Config{
		IPQuota: 2, TotalQuota: 9, AllocationBandwidth: 1000, UserBandwidth: 2000,
		UnauthenticatedRate: 0, UnauthenticatedBurst: 3, BindingRate: 7.5, BindingBurst: 8, MaxConns: 0, MaxConnsPerIP: 4,
		HandshakeTimeout: 3 * time.Second, IdleTimeout: 4 * time.Second,
		AlternateServer: netip.MustParseAddrPort("192.0.2.1:3478"),
	}
	if g, w := limitsOf(got), limitsOf(want); g != w {
		t.Errorf("limits\n got %+v\nwant %+v", g, w)
	}
	if d := config.Get(config.Settings(), s, "drain.timeout"); d != 5*time.Second {
		t.Errorf("drain.timeout = %v, want 5s", d)
	}
}

// limits are the abuse-limit fields of a relay configuration.
type limits struct {
	ipQuota, totalQuota                int
	allocationBandwidth, userBandwidth int64
	unauthRate, bindingRate            float64
	unauthBurst, bindingBurst          int
	maxConns, maxConnsPerIP            int
	handshakeTimeout, idleTimeout      time.Duration
	alternateServer                    netip.AddrPort
}

func limitsOf(c relay.Config) limits {
	return limits{c.IPQuota, c.TotalQuota, c.AllocationBandwidth, c.UserBandwidth, c.UnauthenticatedRate, c.BindingRate,
		c.UnauthenticatedBurst, c.BindingBurst, c.MaxConns, c.MaxConnsPerIP, c.HandshakeTimeout, c.IdleTimeout, c.AlternateServer}
}
