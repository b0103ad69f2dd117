package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/relay"
)

// Abuse and fault limits ([limits]) and draining ([drain]): defaults, flags,
// validation, and the SIGUSR1 / SIGTERM drain sequence.

// Defaults of the abuse limits. Per-address limits are generous: many users
// can share one NAT address. The UDP answer limits are relay's defaults,
// whose comment gives the arithmetic (a 09:00 meeting behind one NAT).
const (
	defaultUnauthRate   = relay.DefaultUnauthenticatedRate
	defaultUnauthBurst  = relay.DefaultUnauthenticatedBurst
	defaultBindingRate  = relay.DefaultBindingRate
	defaultBindingBurst = relay.DefaultBindingBurst
	// defaultMaxConns is sized to memory: an idle TCP connection costs the
	// server about 14 KiB (a 4 KiB buffer, the socket, an 8 KiB goroutine
	// stack), an idle TLS one about 35 KiB (TLS state, a 16 KiB stack),
	// and one that has not allocated at most about 52 KiB (TLS records of
	// 16 KiB); so 10 000 connections hold about 140-350 MiB idle, at most
	// about 510 MiB before they authenticate (README, "Security and abuse
	// limits"). Raise it on a larger host.
	defaultMaxConns      = 10000
	defaultMaxConnsPerIP = 256
	defaultDrainTimeout  = 10 * time.Minute
)

const (
	flagIPQuota             = "ip-quota"
	flagTotalQuota          = "total-quota"
	flagAllocationBandwidth = "allocation-bandwidth"
	flagUserBandwidth       = "user-bandwidth"
	flagUnauthRate          = "unauthenticated-rate"
	flagUnauthBurst         = "unauthenticated-burst"
	flagBindingRate         = "binding-rate"
	flagBindingBurst        = "binding-burst"
	flagMaxConns            = "max-conns"
	flagMaxConnsPerIP       = "max-conns-per-ip"
	flagHandshakeTimeout    = "handshake-timeout"
	flagIdleTimeout         = "idle-timeout"
	flagAlternateServer     = "alternate-server"
	flagDrainTimeout        = "drain-timeout"

	catDrain = "Draining"
)

// DrainConfig is the [drain] table: what happens while the server drains
// (SIGUSR1 or `postern drain`), before a SIGTERM stops it.
type DrainConfig struct {
	// AlternateServer is sent to clients that try to allocate while
	// draining (300 Try Alternate); empty: they get 508.
	AlternateServer string `toml:"alternate_server"`
	// Timeout bounds how long a SIGTERM after a drain waits for the last
	// allocation to end.
	Timeout Duration `toml:"timeout"`
}

// hardeningSettings are the validated [limits] abuse keys and [drain].
type hardeningSettings struct {
	ipQuota, totalQuota                int
	allocationBandwidth, userBandwidth int64
	unauthRate                         float64
	unauthBurst                        int
	bindingRate                        float64
	bindingBurst                       int
	maxConns, maxConnsPerIP            int
	handshakeTimeout, idleTimeout      time.Duration
	alternateServer                    netip.AddrPort
	drainTimeout                       time.Duration
}

func hardeningFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: flagIPQuota, Category: catLimits, DefaultText: "0, unlimited",
			Usage: "at most `N` allocations per client IP address across all listeners"},
		&cli.IntFlag{Name: flagTotalQuota, Category: catLimits, DefaultText: "0, unlimited",
			Usage: "at most `N` allocations in all (508 Insufficient Capacity beyond)"},
		&cli.Int64Flag{Name: flagAllocationBandwidth, Category: catLimits, DefaultText: "0, unlimited",
			Usage: "relay at most `BYTES` per second each way per allocation; excess is dropped"},
		&cli.Int64Flag{Name: flagUserBandwidth, Category: catLimits, DefaultText: "0, unlimited",
			Usage: "relay at most `BYTES` per second each way for all of one user's allocations"},
		&cli.FloatFlag{Name: flagUnauthRate, Category: catLimits, Value: defaultUnauthRate,
			Usage: "UDP answers per second `R` to one address's (IPv6: /64's) unauthenticated requests (401, 438, 400, 420); 0 = no limit"},
		&cli.IntFlag{Name: flagUnauthBurst, Category: catLimits, Value: defaultUnauthBurst,
			Usage: "burst `N` of --unauthenticated-rate (0: the default)"},
		&cli.FloatFlag{Name: flagBindingRate, Category: catLimits, Value: defaultBindingRate,
			Usage: "UDP Binding answers per second `R` to one address (IPv6: /64); 0 = no limit"},
		&cli.IntFlag{Name: flagBindingBurst, Category: catLimits, Value: defaultBindingBurst,
			Usage: "burst `N` of --binding-rate (0: the default)"},
		&cli.IntFlag{Name: flagMaxConns, Category: catLimits, Value: defaultMaxConns,
			Usage: "at most `N` TCP/TLS client connections in all; 0 = no cap"},
		&cli.IntFlag{Name: flagMaxConnsPerIP, Category: catLimits, Value: defaultMaxConnsPerIP,
			Usage: "at most `N` TCP/TLS connections per source address; 0 = no cap"},
		&cli.DurationFlag{Name: flagHandshakeTimeout, Category: catLimits, Value: relay.DefaultHandshakeTimeout,
			Usage: "close TCP/TLS connections whose first byte, PROXY header or TLS handshake takes longer than `D`"},
		&cli.DurationFlag{Name: flagIdleTimeout, Category: catLimits, Value: relay.DefaultIdleTimeout,
			Usage: "close TCP/TLS connections that have had no allocation for `D` (not yet, or since a Refresh with lifetime 0)"},
		&cli.StringFlag{Name: flagAlternateServer, Category: catDrain, DefaultText: "none: 508",
			Usage: "while draining, send allocating clients to `IP:PORT` (300 Try Alternate)"},
		&cli.DurationFlag{Name: flagDrainTimeout, Category: catDrain, Value: defaultDrainTimeout,
			Usage: "after a drain, SIGTERM waits up to `D` for the last allocation to end"},
	}
}

func (c *Config) applyHardeningFlags(cmd *cli.Command) {
	l := &c.Limits
	override(cmd, flagIPQuota, &l.IPQuota, cmd.Int)
	override(cmd, flagTotalQuota, &l.TotalQuota, cmd.Int)
	override(cmd, flagAllocationBandwidth, &l.AllocationBandwidth, cmd.Int64)
	override(cmd, flagUserBandwidth, &l.UserBandwidth, cmd.Int64)
	overridePtr(cmd, flagUnauthRate, &l.UnauthenticatedRate, cmd.Float)
	override(cmd, flagUnauthBurst, &l.UnauthenticatedBurst, cmd.Int)
	overridePtr(cmd, flagBindingRate, &l.BindingRate, cmd.Float)
	override(cmd, flagBindingBurst, &l.BindingBurst, cmd.Int)
	overridePtr(cmd, flagMaxConns, &l.MaxConns, cmd.Int)
	overridePtr(cmd, flagMaxConnsPerIP, &l.MaxConnsPerIP, cmd.Int)
	override(cmd, flagHandshakeTimeout, &l.HandshakeTimeout, durationOf(cmd))
	override(cmd, flagIdleTimeout, &l.IdleTimeout, durationOf(cmd))
	override(cmd, flagAlternateServer, &c.Drain.AlternateServer, cmd.String)
	override(cmd, flagDrainTimeout, &c.Drain.Timeout, durationOf(cmd))
}

// loadHardening validates the abuse limits and [drain] into s.hard.
func (s *settings) loadHardening(c Config) error {
	l := c.Limits
	for _, v := range []struct {
		key, flag string
		n         int64
	}{
		{"limits.ip_quota", flagIPQuota, int64(l.IPQuota)},
		{"limits.total_quota", flagTotalQuota, int64(l.TotalQuota)},
		{"limits.allocation_bandwidth", flagAllocationBandwidth, l.AllocationBandwidth},
		{"limits.user_bandwidth", flagUserBandwidth, l.UserBandwidth},
		{"limits.unauthenticated_burst", flagUnauthBurst, int64(l.UnauthenticatedBurst)},
		{"limits.binding_burst", flagBindingBurst, int64(l.BindingBurst)},
	} {
		if v.n < 0 {
			return fmt.Errorf("%s (--%s) %d: write 0 for unlimited or a positive number", v.key, v.flag, v.n)
		}
	}
	h := hardeningSettings{
		ipQuota: l.IPQuota, totalQuota: l.TotalQuota,
		allocationBandwidth: l.AllocationBandwidth, userBandwidth: l.UserBandwidth,
		unauthRate: defaultUnauthRate, unauthBurst: defaultUnauthBurst,
		bindingRate: defaultBindingRate, bindingBurst: defaultBindingBurst,
		maxConns: defaultMaxConns, maxConnsPerIP: defaultMaxConnsPerIP,
	}
	if l.UnauthenticatedRate != nil {
		if *l.UnauthenticatedRate < 0 {
			return fmt.Errorf("limits.unauthenticated_rate (--%s) %v: write 0 for no limit or answers per second such as %v", flagUnauthRate, *l.UnauthenticatedRate, defaultUnauthRate)
		}
		h.unauthRate = *l.UnauthenticatedRate
	}
	if l.UnauthenticatedBurst > 0 {
		h.unauthBurst = l.UnauthenticatedBurst
	}
	if l.BindingRate != nil {
		if *l.BindingRate < 0 {
			return fmt.Errorf("limits.binding_rate (--%s) %v: write 0 for no limit or answers per second such as %v", flagBindingRate, *l.BindingRate, defaultBindingRate)
		}
		h.bindingRate = *l.BindingRate
	}
	if l.BindingBurst > 0 {
		h.bindingBurst = l.BindingBurst
	}
	for _, v := range []struct {
		key, flag string
		p         *int
		dst       *int
	}{
		{"limits.max_conns", flagMaxConns, l.MaxConns, &h.maxConns},
		{"limits.max_conns_per_ip", flagMaxConnsPerIP, l.MaxConnsPerIP, &h.maxConnsPerIP},
	} {
		if v.p == nil {
			continue
		}
		if *v.p < 0 {
			return fmt.Errorf("%s (--%s) %d: write 0 for no cap or a positive count", v.key, v.flag, *v.p)
		}
		*v.dst = *v.p
	}
	var err error
	if h.handshakeTimeout, err = positive(l.HandshakeTimeout, relay.DefaultHandshakeTimeout, "limits.handshake_timeout", flagHandshakeTimeout); err != nil {
		return err
	}
	if h.idleTimeout, err = positive(l.IdleTimeout, relay.DefaultIdleTimeout, "limits.idle_timeout", flagIdleTimeout); err != nil {
		return err
	}
	if h.drainTimeout, err = positive(c.Drain.Timeout, defaultDrainTimeout, "drain.timeout", flagDrainTimeout); err != nil {
		return err
	}
	if v := c.Drain.AlternateServer; v != "" {
		if h.alternateServer, err = netip.ParseAddrPort(v); err != nil {
			return fmt.Errorf("drain.alternate_server (--%s) %q: write IP:PORT, e.g. 203.0.113.8:3478 or [2001:db8::8]:3478", flagAlternateServer, v)
		}
	}
	s.hard = h
	return nil
}

// apply copies the limits into a relay configuration.
func (h hardeningSettings) apply(cfg *relay.Config) {
	cfg.IPQuota, cfg.TotalQuota = h.ipQuota, h.totalQuota
	cfg.AllocationBandwidth, cfg.UserBandwidth = h.allocationBandwidth, h.userBandwidth
	cfg.UnauthenticatedRate, cfg.UnauthenticatedBurst = h.unauthRate, h.unauthBurst
	cfg.BindingRate, cfg.BindingBurst = h.bindingRate, h.bindingBurst
	cfg.MaxConns, cfg.MaxConnsPerIP = h.maxConns, h.maxConnsPerIP
	cfg.HandshakeTimeout, cfg.IdleTimeout = h.handshakeTimeout, h.idleTimeout
	cfg.AlternateServer = h.alternateServer
}

// drainer is the part of relay.Server the drain sequence uses.
type drainer interface {
	SetDraining(bool)
	Draining() bool
	Stats() relay.Stats
}

// drainContext returns the context the relay should run under: SIGUSR1
// starts a drain (no new allocations, existing ones run on), and when
// parent ends (SIGTERM, SIGINT) during a drain, the returned context ends
// only once the last allocation has gone or timeout has passed. Without a
// drain it ends with parent.
func drainContext(parent context.Context, srv drainer, timeout time.Duration, log *slog.Logger) context.Context {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	return drainOn(parent, srv, timeout, log, usr1, func() { signal.Stop(usr1) })
}

// drainOn is drainContext with the drain trigger as a channel, for tests.
func drainOn(parent context.Context, srv drainer, timeout time.Duration, log *slog.Logger, trigger <-chan os.Signal, stop func()) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		defer stop()
		for {
			select {
			case <-trigger:
				if !srv.Draining() {
					srv.SetDraining(true)
					log.Info("draining: new allocations are refused, existing ones run to their end; SIGTERM stops once they have",
						"allocations", srv.Stats().AllocationsActive)
				}
				continue
			case <-parent.Done():
			}
			break
		}
		if !srv.Draining() {
			return
		}
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		log.Info("stopping after the drain", "allocations", srv.Stats().AllocationsActive, "timeout", timeout)
		for srv.Stats().AllocationsActive > 0 {
			select {
			case <-deadline.C:
				log.Warn("drain timeout: stopping with allocations left", "allocations", srv.Stats().AllocationsActive)
				return
			case <-tick.C:
			}
		}
	}()
	return ctx
}
