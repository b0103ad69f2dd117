package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postern/postern/internal/udpio"
)

// A relay run: set up N allocations, each with its own peer, stream through
// them for warmup+duration, and measure the middle.

// setupFlow is one allocation being set up.
type setupFlow struct {
	f    *flow
	cl   *turnClient
	peer *net.UDPConn
}

// setupFlows makes cfg.allocations allocations, cfg.setupConcurrency at a
// time: Allocate, a peer socket connected to the relayed address, then
// ChannelBind (or CreatePermission for Send indications).
func setupFlows(ctx context.Context, cfg *config) ([]*setupFlow, error) {
	flows := make([]*setupFlow, cfg.allocations)
	var wg sync.WaitGroup
	var failed atomic.Bool
	var firstErr error
	var once sync.Once
	sem := make(chan struct{}, cfg.setupConcurrency)
	for i := range flows {
		sem <- struct{}{}
		if failed.Load() || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			sf, err := setupOne(cfg, i)
			if err != nil {
				once.Do(func() { firstErr = fmt.Errorf("allocation %d: %w", i, err) })
				failed.Store(true)
				return
			}
			flows[i] = sf
		})
	}
	wg.Wait()
	err := firstErr
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		for _, sf := range flows {
			if sf != nil {
				sf.close()
			}
		}
		return nil, err
	}
	return flows, nil
}

func setupOne(cfg *config, i int) (*setupFlow, error) {
	// Spread over source addresses as setup and idle modes do: thousands of
	// allocations back to back reuse ephemeral ports, and a reused 5-tuple
	// can meet the server's memory of the last run's allocation (coturn
	// answers 437).
	// A 437 all the same (a loaded server lost the last run's deletions)
	// is met as a client would: from a new port.
	var (
		cl      *turnClient
		relayed netip.AddrPort
		conn    ctrlConn
		err     error
	)
	for try := 0; ; try++ {
		conn, err = dialCtrl(cfg.transport, cfg.server, cfg.tlsConfig(), cfg.timeout, cfg.source(uint64(i+try*cfg.allocations)))
		if err != nil {
			return nil, fmt.Errorf("connect to %s over %s: %w", cfg.server, cfg.transport, err)
		}
		cl = &turnClient{conn: conn, creds: cfg.creds, timeout: cfg.timeout}
		relayed, err = cl.allocate()
		if err == nil {
			break
		}
		_ = conn.close()
		var ec *errorCodeError
		if try == 2 || !errors.As(err, &ec) || ec.code != 437 {
			return nil, err
		}
	}
	peer, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.peerIP, 0)), net.UDPAddrFromAddrPort(relayed))
	if err != nil {
		_ = conn.close()
		return nil, fmt.Errorf("peer socket: %w", err)
	}
	f := &flow{idx: uint32(i), channel: 0x4000, client: -1, peer: -1, relayed: relayed, peerAddr: peer.LocalAddr().(*net.UDPAddr).AddrPort()}
	if cfg.indications {
		err = cl.permit(f.peerAddr)
	} else {
		err = cl.channelBind(f.channel, f.peerAddr)
	}
	if err != nil {
		_ = conn.close()
		_ = peer.Close()
		return nil, err
	}
	return &setupFlow{f: f, cl: cl, peer: peer}, nil
}

func (sf *setupFlow) close() {
	if sf.cl.conn != nil {
		_ = sf.cl.conn.close()
	}
	if sf.peer != nil {
		_ = sf.peer.Close()
	}
}

// snapshot is the counters and the server's usage at one moment.
type snapshot struct {
	at                     time.Time
	sent, toPeer, toClient uint64
	lost, sendErrs         uint64
	server                 procUsage
	self                   procUsage
	serverErr              error
	machine                float64 // busy CPU seconds of all CPUs
	machineErr             error
	serverCPU              float64 // busy CPU seconds of -server-cpu
	serverCPUErr           error
}

func takeSnapshot(cfg *config, ctr *counters) snapshot {
	s := snapshot{
		at: time.Now(), sent: ctr.sent.Load(), toPeer: ctr.toPeer.Load(), toClient: ctr.toClient.Load(),
		lost: ctr.lost.Load(), sendErrs: ctr.sendErrs.Load(),
	}
	if cfg.pid != "" {
		s.server, s.serverErr = readProc(cfg.pid, cfg.clkTck)
	}
	s.self, _ = readProc("self", cfg.clkTck)
	s.machine, s.machineErr = readMachineCPU(cfg.clkTck, -1)
	if cfg.serverCPU >= 0 {
		s.serverCPU, s.serverCPUErr = readMachineCPU(cfg.clkTck, cfg.serverCPU)
	}
	return s
}

// runRelay is -mode relay.
func runRelay(ctx context.Context, cfg *config) (*result, error) {
	setupStart := time.Now()
	sfs, err := setupFlows(ctx, cfg)
	if err != nil {
		return nil, err
	}
	setupTime := time.Since(setupStart)

	spec := frameSpec{size: cfg.size, indications: cfg.indications, stream: cfg.transport != "udp"}
	ctr := &counters{}
	var measuring, stop atomic.Bool
	epoch := time.Now()
	window := cfg.window
	if window <= 0 {
		window = max(1, (128+cfg.allocations-1)/cfg.allocations)
	}

	var wg sync.WaitGroup
	var hists []*histogram
	var runErr error
	var errOnce sync.Once
	fail := func(err error) { errOnce.Do(func() { runErr = err; stop.Store(true) }) }
	var cleanup []func()

	if cfg.transport == "udp" {
		workers := max(1, min(cfg.workers, len(sfs)))
		groups := make([][]*flow, workers)
		for i, sf := range sfs {
			f := sf.f
			u := sf.cl.conn.(*udpCtrl)
			if f.client, err = takeFD(u.c); err != nil {
				return nil, err
			}
			sf.cl.conn = nil
			if f.peer, err = takeFD(sf.peer); err != nil {
				return nil, err
			}
			sf.peer = nil
			if cfg.gso {
				if err := udpio.SetGSO(f.client, spec.frameLen()); err != nil {
					return nil, fmt.Errorf("%w (run with -gso=false on kernels before 4.18)", err)
				}
				if err := udpio.SetGSO(f.peer, spec.size); err != nil {
					return nil, err
				}
			}
			groups[i%workers] = append(groups[i%workers], f)
		}
		for _, g := range groups {
			pace := pacing{window: window}
			if cfg.rate > 0 {
				pace.rate = cfg.rate * float64(len(g)) / float64(len(sfs))
			}
			w, err := newUDPWorker(g, spec, pace, cfg.gso, epoch, ctr, &measuring)
			if err != nil {
				return nil, err
			}
			hists = append(hists, w.hist)
			wg.Go(func() {
				if err := w.run(&stop); err != nil {
					fail(err)
				}
			})
		}
		cleanup = append(cleanup, func() { deallocateUDP(cfg, sfs) })
	} else {
		for _, sf := range sfs {
			pace := pacing{window: window}
			if cfg.rate > 0 {
				pace.rate = cfg.rate / float64(len(sfs))
			}
			s := newStreamFlow(sf.f, sf.cl.conn.(*streamCtrl), spec, pace, epoch, ctr, &measuring)
			hists = append(hists, s.hist)
			peer := sf.peer
			wg.Go(func() { runPeer(peer, spec, cfg.gso, ctr) })
			wg.Go(func() { s.run(&stop) })
		}
		cleanup = append(cleanup, func() {
			for _, sf := range sfs {
				sf.close() // closing the connection ends the allocation (RFC 8656 §3.1)
			}
		})
	}

	stopAll := func() {
		stop.Store(true)
		if cfg.transport != "udp" {
			// Unblock the stream and peer goroutines.
			for _, sf := range sfs {
				_ = sf.cl.conn.(*streamCtrl).c.SetReadDeadline(time.Now())
				_ = sf.peer.SetReadDeadline(time.Now())
			}
		}
	}
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return !stop.Load()
		}
	}
	ok := sleep(cfg.warmup)
	var a, b snapshot
	if ok {
		measuring.Store(true)
		a = takeSnapshot(cfg, ctr)
		ok = sleep(cfg.duration)
		b = takeSnapshot(cfg, ctr)
		measuring.Store(false)
	}
	stopAll()
	if cfg.transport != "udp" {
		for _, sf := range sfs {
			_ = sf.peer.Close()
		}
	}
	wg.Wait()
	if cfg.cleanup {
		for _, c := range cleanup {
			c()
		}
	} else if cfg.transport == "udp" {
		closeUDP(sfs)
	}
	if runErr != nil {
		return nil, runErr
	}
	if !ok {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errors.New("run stopped early")
	}
	h := newHistogram()
	for _, x := range hists {
		h.merge(x)
	}
	return relayResult(cfg, a, b, h, setupTime), nil
}

// deallocateUDP ends the UDP allocations (Refresh lifetime 0) on their own
// 5-tuples, then closes the sockets.
func deallocateUDP(cfg *config, sfs []*setupFlow) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, cfg.setupConcurrency)
	for _, sf := range sfs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f := sf.f
			defer closeFDs(f)
			// Requests are longer than the data frames: no segmentation.
			_ = udpio.SetGSO(f.client, 0)
			file := os.NewFile(uintptr(f.client), "client")
			pc, err := net.FilePacketConn(file)
			f.client = -1
			_ = file.Close()
			if err != nil {
				return
			}
			cl := &turnClient{conn: &udpCtrl{c: pc.(*net.UDPConn), buf: make([]byte, 2048)}, creds: cfg.creds, timeout: cfg.timeout}
			defer cl.conn.close()
			_ = cl.deallocate()
		})
	}
	wg.Wait()
}

func closeUDP(sfs []*setupFlow) {
	for _, sf := range sfs {
		closeFDs(sf.f)
	}
}

func closeFDs(f *flow) {
	for _, fd := range []*int{&f.client, &f.peer} {
		if *fd >= 0 {
			_ = unix.Close(*fd)
			*fd = -1
		}
	}
}

// relayResult turns two snapshots into the report.
func relayResult(cfg *config, a, b snapshot, h *histogram, setup time.Duration) *result {
	secs := b.at.Sub(a.at).Seconds()
	r := cfg.newResult()
	r.Seconds = secs
	r.SetupSeconds = setup.Seconds()
	r.Sent = b.sent - a.sent
	r.ToPeer = b.toPeer - a.toPeer
	r.ToClient = b.toClient - a.toClient
	r.Lost = b.lost - a.lost
	r.SendErrors = b.sendErrs - a.sendErrs
	relayed := r.ToPeer + r.ToClient
	r.RelayedPPS = float64(relayed) / secs
	r.Mbps = float64(relayed) * float64(cfg.size) * 8 / secs / 1e6
	if r.Sent > 0 {
		r.Loss = max(0, 1-float64(r.ToClient)/float64(r.Sent))
	}
	r.RTTp50, r.RTTp99, r.RTTp999 = h.quantile(0.50), h.quantile(0.99), h.quantile(0.999)
	r.RTTSamples = h.count
	r.LoadCPUSeconds = b.self.cpuSeconds - a.self.cpuSeconds
	if cfg.serverCPU >= 0 && a.serverCPUErr == nil && b.serverCPUErr == nil {
		r.ServerCPUBusySeconds = b.serverCPU - a.serverCPU
		if relayed > 0 {
			r.ServerCPUBusyPerMpkt = r.ServerCPUBusySeconds / (float64(relayed) / 1e6)
		}
	}
	if a.machineErr == nil && b.machineErr == nil {
		r.MachineCPUSeconds = b.machine - a.machine
		if relayed > 0 {
			r.MachineCPUPerMpkt = r.MachineCPUSeconds / (float64(relayed) / 1e6)
		}
	}
	if cfg.pid != "" && a.serverErr == nil && b.serverErr == nil {
		r.ServerCPUSeconds = b.server.cpuSeconds - a.server.cpuSeconds
		r.ServerUtil = r.ServerCPUSeconds / secs
		if relayed > 0 {
			r.ServerCPUPerMpkt = r.ServerCPUSeconds / (float64(relayed) / 1e6)
		}
		r.ServerRSSKiB, r.ServerHWMKiB = b.server.rssKiB, b.server.hwmKiB
	}
	return r
}
