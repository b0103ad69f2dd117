package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// runSetup is -mode setup: cfg.setupConcurrency clients each repeat, on a
// fresh UDP socket, what a WebRTC client does to get a relay: an Allocate
// that draws the 401 challenge, the authenticated Allocate, and at the end
// a Refresh with lifetime 0 (so that relay ports are not exhausted). The
// rate counts authenticated Allocates answered with success per second;
// the latency quantiles are of the whole two-round-trip Allocate.
func runSetup(ctx context.Context, cfg *config) (*result, error) {
	var done, failures atomic.Uint64
	var measuring, stop atomic.Bool
	var firstErr atomic.Pointer[error]
	hists := make([]*histogram, cfg.setupConcurrency)
	var wg sync.WaitGroup
	var next atomic.Uint64
	for i := range hists {
		h := newHistogram()
		hists[i] = h
		wg.Go(func() {
			for !stop.Load() {
				t0 := time.Now()
				err := setupCycle(cfg, cfg.source(next.Add(1)), func() {
					if measuring.Load() {
						h.add(int64(time.Since(t0)))
						done.Add(1)
					}
				})
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					var ec *errorCodeError
					if !errors.As(err, &ec) {
						time.Sleep(10 * time.Millisecond) // no hot loop on a dead server
					}
				}
			}
		})
	}
	sample := func() (uint64, uint64, snapshot) {
		return done.Load(), failures.Load(), takeSnapshot(cfg, &counters{})
	}
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	ok := wait(cfg.warmup)
	measuring.Store(true)
	n0, f0, a := sample()
	ok = ok && wait(cfg.duration)
	n1, f1, b := sample()
	measuring.Store(false)
	stop.Store(true)
	wg.Wait()
	if !ok {
		return nil, ctx.Err()
	}
	if n1 == n0 {
		if p := firstErr.Load(); p != nil {
			return nil, fmt.Errorf("no allocation succeeded: %w", *p)
		}
		return nil, errors.New("no allocation succeeded")
	}
	h := newHistogram()
	for _, x := range hists {
		h.merge(x)
	}
	r := cfg.newResult()
	r.Seconds = b.at.Sub(a.at).Seconds()
	r.AllocsPerSec = float64(n1-n0) / r.Seconds
	r.Errors = f1 - f0
	if p := firstErr.Load(); p != nil {
		r.FirstError = (*p).Error()
	}
	r.RTTp50, r.RTTp99, r.RTTp999 = h.quantile(0.5), h.quantile(0.99), h.quantile(0.999)
	r.RTTSamples = h.count
	r.LoadCPUSeconds = b.self.cpuSeconds - a.self.cpuSeconds
	if cfg.pid != "" && a.serverErr == nil && b.serverErr == nil {
		r.ServerCPUSeconds = b.server.cpuSeconds - a.server.cpuSeconds
		r.ServerUtil = r.ServerCPUSeconds / r.Seconds
		r.ServerRSSKiB, r.ServerHWMKiB = b.server.rssKiB, b.server.hwmKiB
	}
	return r, nil
}

// setupCycle allocates on a new socket from local, calls allocated, and
// deallocates.
func setupCycle(cfg *config, local netip.Addr, allocated func()) error {
	conn, err := dialCtrl("udp", cfg.server, nil, cfg.timeout, local)
	if err != nil {
		return err
	}
	defer conn.close()
	cl := &turnClient{conn: conn, creds: cfg.creds, timeout: cfg.timeout}
	if _, err := cl.allocate(); err != nil {
		return err
	}
	allocated()
	return cl.deallocate()
}

// runIdle is -mode idle: make cfg.allocations UDP allocations, each with a
// channel bound to one shared peer, hold them without traffic for cfg.hold,
// and report the server's resident memory against its baseline.
func runIdle(ctx context.Context, cfg *config) (*result, error) {
	if cfg.pid == "" {
		return nil, errors.New("-mode idle measures the server's memory: give its process id with -pid")
	}
	base, err := readProc(cfg.pid, cfg.clkTck)
	if err != nil {
		return nil, err
	}
	peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.peerIP, 0)))
	if err != nil {
		return nil, fmt.Errorf("peer socket: %w", err)
	}
	defer peer.Close()
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	conns := make([]ctrlConn, cfg.allocations)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.close()
			}
		}
	}()
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	sem := make(chan struct{}, cfg.setupConcurrency)
	start := time.Now()
	for i := range conns {
		if firstErr.Load() != nil || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, err := dialCtrl("udp", cfg.server, nil, cfg.timeout, cfg.source(uint64(i)))
			if err == nil {
				conns[i] = conn
				cl := &turnClient{conn: conn, creds: cfg.creds, timeout: cfg.timeout}
				if _, err = cl.allocate(); err == nil {
					err = cl.channelBind(0x4000, peerAddr)
				}
			}
			if err != nil {
				err = fmt.Errorf("allocation %d: %w", i, err)
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return nil, *p
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	setup := time.Since(start)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(cfg.hold):
	}
	after, err := readProc(cfg.pid, cfg.clkTck)
	if err != nil {
		return nil, err
	}
	r := cfg.newResult()
	r.SetupSeconds = setup.Seconds()
	r.AllocsPerSec = float64(cfg.allocations) / setup.Seconds()
	r.BaselineRSSKiB = base.rssKiB
	r.ServerRSSKiB, r.ServerHWMKiB = after.rssKiB, after.hwmKiB
	r.RSSPerAllocB = float64(after.rssKiB-base.rssKiB) * 1024 / float64(cfg.allocations)
	return r, nil
}

// runPing is -mode ping: a STUN Binding request over UDP, retried until
// answered or cfg.timeout passes. Scripts use it to wait for a server.
func runPing(ctx context.Context, cfg *config) (*result, error) {
	deadline := time.Now().Add(cfg.timeout)
	for {
		conn, err := dialCtrl("udp", cfg.server, nil, cfg.timeout, netip.Addr{})
		if err != nil {
			return nil, err
		}
		cl := &turnClient{conn: conn, timeout: 200 * time.Millisecond}
		err = cl.binding()
		_ = conn.close()
		if err == nil {
			r := cfg.newResult()
			return r, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("no STUN answer from %s within %v: %w", cfg.server, cfg.timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
