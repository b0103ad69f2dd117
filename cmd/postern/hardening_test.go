package main

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
)

// fakeDrainer stands in for relay.Server in the drain sequence.
type fakeDrainer struct {
	draining atomic.Bool
	active   atomic.Int64
}

func (f *fakeDrainer) SetDraining(d bool) { f.draining.Store(d) }
func (f *fakeDrainer) Draining() bool     { return f.draining.Load() }
func (f *fakeDrainer) Stats() relay.Stats {
	return relay.Stats{AllocationsActive: int(f.active.Load())}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestDrainSequence(t *testing.T) {
	ended := func(ctx context.Context, within time.Duration) bool {
		select {
		case <-ctx.Done():
			return true
		case <-time.After(within):
			return false
		}
	}
	t.Run("no drain: stops with the parent", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		ctx := drainOn(parent, &fakeDrainer{}, time.Hour, quietLog(), make(chan os.Signal), func() {})
		cancel()
		if !ended(ctx, time.Second) {
			t.Fatal("relay context outlived SIGTERM without a drain")
		}
	})
	t.Run("drain: waits for the last allocation", func(t *testing.T) {
		f := &fakeDrainer{}
		f.active.Store(2)
		trigger := make(chan os.Signal, 1)
		parent, cancel := context.WithCancel(context.Background())
		ctx := drainOn(parent, f, time.Hour, quietLog(), trigger, func() {})
		trigger <- syscall.SIGUSR1
		deadline := time.Now().Add(time.Second)
		for !f.Draining() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if !f.Draining() {
			t.Fatal("SIGUSR1 did not start a drain")
		}
		cancel() // SIGTERM
		if ended(ctx, 500*time.Millisecond) {
			t.Fatal("relay stopped with allocations left during a drain")
		}
		f.active.Store(0)
		if !ended(ctx, 2*time.Second) {
			t.Fatal("relay did not stop once the last allocation ended")
		}
	})
	t.Run("drain: timeout", func(t *testing.T) {
		f := &fakeDrainer{}
		f.active.Store(1)
		f.SetDraining(true)
		parent, cancel := context.WithCancel(context.Background())
		ctx := drainOn(parent, f, 300*time.Millisecond, quietLog(), make(chan os.Signal), func() {})
		cancel()
		if !ended(ctx, 2*time.Second) {
			t.Fatal("drain timeout did not stop the relay")
		}
	})
}

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
		c, err := Load(path)
		if err == nil {
			_, err = c.settings()
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
	config.Apply(config.Settings(), s.declared, &got)
	want := relay.Config{
		IPQuota: 2, TotalQuota: 9, AllocationBandwidth: 1000, UserBandwidth: 2000,
		UnauthenticatedRate: 0, UnauthenticatedBurst: 3, BindingRate: 7.5, BindingBurst: 8, MaxConns: 0, MaxConnsPerIP: 4,
		HandshakeTimeout: 3 * time.Second, IdleTimeout: 4 * time.Second,
		AlternateServer: netip.MustParseAddrPort("192.0.2.1:3478"),
	}
	if g, w := limitsOf(got), limitsOf(want); g != w {
		t.Errorf("limits\n got %+v\nwant %+v", g, w)
	}
	if d := config.Get(config.Settings(), s.declared, "drain.timeout"); d != 5*time.Second {
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

// TestCheckConfigTypeHints: check-config explains the expected type of the
// newer keys (optional ints, int64, float, bool) as it does for the others.
func TestCheckConfigTypeHints(t *testing.T) {
	for key, want := range map[string]string{
		"max_conns":            "a whole number without quotes",
		"allocation_bandwidth": "a whole number without quotes",
		"unauthenticated_rate": "a number without quotes",
	} {
		if got := expectedType([]string{"limits", key}); !strings.Contains(got, want) {
			t.Errorf("expectedType(limits.%s) = %q, want %q", key, got, want)
		}
	}
	if got := expectedType([]string{"tls", "acme"}); got != "true or false, without quotes" {
		t.Errorf("expectedType(tls.acme) = %q", got)
	}
}
