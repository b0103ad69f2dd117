package relay

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/internal/kernelpath"
)

// Kernel path modes ([relay] kernel_path).
const (
	KernelPathOff = "off"
	// KernelPathTC relays bound channels of UDP allocations in an eBPF
	// program at TCX ingress (internal/kernelpath); the server does not
	// start where the program cannot load.
	KernelPathTC = "tc"
	// KernelPathAuto is KernelPathTC where the program loads, and the relay
	// in user space only (with a warning saying why) where it does not.
	KernelPathAuto = "auto"
)

// CheckKernelPath reports whether mode is a kernel path mode.
func CheckKernelPath(mode string) error {
	switch mode {
	case "", KernelPathOff, KernelPathTC, KernelPathAuto:
		return nil
	}
	return fmt.Errorf("relay: kernel path %q: want %q, %q or %q", mode, KernelPathOff, KernelPathTC, KernelPathAuto)
}

// kernelCountPeriod is how often what the kernel relayed is added to the
// allocations' counters (metrics, usage records, the admin view).
const kernelCountPeriod = time.Second

// kernelPath hands the server's bound channels to the kernel fast path:
// each UDP allocation's live channels whose datagrams the relay would
// forward unchanged (no bandwidth limit to spend, the peer policy
// allowing the peer, addresses of one family the program can rewrite) are
// installed, bounded by their earliest expiry, which the program checks
// per packet. The requests that change what is live (CreatePermission,
// ChannelBind, Refresh) re-sync their allocation, a policy reload re-syncs
// every one, and a removed allocation's bindings go before its relay port
// can be handed out again.
type kernelPath struct {
	s    *Server
	path *kernelpath.Path

	mu      sync.Mutex // guards the following
	byAlloc map[*allocations.Allocation][]kernelBinding
	closed  bool
	scratch []allocations.LiveChannel
}

// kernelBinding is an installed binding and what of its counts the
// allocation's counters already hold.
type kernelBinding struct {
	b                kernelpath.Binding
	toPeer, toClient kernelpath.Count
}

// kernelAttachPeriod is how often, attached to every interface, the
// kernel path looks for interfaces that came up since.
const kernelAttachPeriod = 5 * time.Second

// startKernelPath loads the kernel path when the configuration asks for
// it; it stops with ctx (counting what it relayed last).
func (s *Server) startKernelPath(ctx context.Context) error {
	mode := s.cfg.KernelPath
	if mode != KernelPathTC && mode != KernelPathAuto {
		return nil
	}
	path, err := kernelpath.Open(s.cfg.KernelPathInterfaces)
	if err != nil {
		if mode == KernelPathAuto {
			s.log.Warn("kernel path not loaded; relaying in user space only", "err", err)
			return nil
		}
		return fmt.Errorf("relay: [relay] kernel_path = %q: %w (set it to %q to relay in user space where it cannot load, or %q)", mode, err, KernelPathAuto, KernelPathOff)
	}
	k := &kernelPath{s: s, path: path, byAlloc: map[*allocations.Allocation][]kernelBinding{}}
	s.kernel.Store(k)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(kernelCountPeriod)
		defer t.Stop()
		lastAttach, lastErr := time.Now(), ""
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				k.count()
				if len(s.cfg.KernelPathInterfaces) == 0 && now.Sub(lastAttach) >= kernelAttachPeriod {
					lastAttach = now
					names, err := path.AttachNew()
					if len(names) > 0 {
						s.log.Info("kernel path attached to new interfaces", "interfaces", names)
					}
					// Once per cause: the next try meets the same interface.
					if err != nil && err.Error() != lastErr {
						s.log.Warn("kernel path: not attached to a new interface; its traffic is relayed in user space", "err", err)
					}
					lastErr = ""
					if err != nil {
						lastErr = err.Error()
					}
				}
			}
		}
	}()
	s.mu.Lock()
	s.closers = append(s.closers, func() error {
		<-done
		return k.close()
	})
	s.mu.Unlock()
	s.log.Info("kernel path loaded: bound channels of UDP allocations are relayed by eBPF at TCX ingress", "interfaces", path.Interfaces())
	return nil
}

// kernelSync re-syncs a's bindings with the kernel path, if there is one.
func (s *Server) kernelSync(a *allocations.Allocation) {
	if k := s.kernel.Load(); k != nil {
		k.sync(a)
	}
}

// kernelForget takes a's bindings out of the kernel path, counting what
// they relayed, if there is one.
func (s *Server) kernelForget(a *allocations.Allocation) {
	if k := s.kernel.Load(); k != nil {
		k.forget(a)
	}
}

// kernelSyncAll re-syncs every allocation (the peer policy changed).
func (s *Server) kernelSyncAll() {
	k := s.kernel.Load()
	if k == nil {
		return
	}
	s.table.Range(func(a *allocations.Allocation) bool {
		k.sync(a)
		return true
	})
}

// endpoints are the addresses of a's bindings other than the client's
// and the peer's, and whether a may take the kernel path at all.
func (k *kernelPath) endpoints(a *allocations.Allocation) (server, relay netip.AddrPort, ok bool) {
	select {
	case <-a.Done():
		return netip.AddrPort{}, netip.AddrPort{}, false // removed (a Refresh with lifetime 0)
	default:
	}
	if a.FiveTuple.Transport != allocations.UDP || a.TCP != nil || a.Dual() || a.Limited() || a.Conn == nil {
		return netip.AddrPort{}, netip.AddrPort{}, false
	}
	la, ok := a.Conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, netip.AddrPort{}, false
	}
	server, relay = unmap(a.FiveTuple.Server), unmap(la.AddrPort())
	// A wildcard listener or relay address is not what the packets carry.
	// (Families: kernelpath.Supported, per binding.)
	if server.Addr().IsUnspecified() || relay.Addr().IsUnspecified() {
		return netip.AddrPort{}, netip.AddrPort{}, false
	}
	return server, relay, true
}

func unmap(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }

// sync installs a's live channels and removes the bindings no longer live.
func (k *kernelPath) sync(a *allocations.Allocation) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	old := k.byAlloc[a]
	var want []kernelBinding
	if server, relay, ok := k.endpoints(a); ok {
		k.scratch = a.LiveChannels(k.scratch[:0], time.Now())
		for _, c := range k.scratch {
			b := kernelpath.Binding{Client: unmap(a.FiveTuple.Client), Server: server, Relay: relay, Peer: unmap(c.Peer), Channel: c.Number}
			if _, allowed := k.s.peerDropReason(b.Peer); !allowed || !kernelpath.Supported(b) {
				continue // the peer policy (perhaps reloaded) or the own-address rule; or families mixed
			}
			if err := k.path.Install(b, c.Until); err != nil {
				k.s.log.Warn("kernel path: binding not installed; relayed in user space", "user", a.Username, "peer", b.Peer.String(), "err", err)
				continue
			}
			kb := kernelBinding{b: b}
			if i := slices.IndexFunc(old, func(o kernelBinding) bool { return o.b == b }); i >= 0 {
				kb = old[i]
			}
			want = append(want, kb)
		}
	}
	for _, o := range old {
		if !slices.ContainsFunc(want, func(w kernelBinding) bool { return w.b == o.b }) {
			k.remove(a, o)
		}
	}
	if len(want) == 0 {
		delete(k.byAlloc, a)
	} else {
		k.byAlloc[a] = want
	}
}

// forget removes every binding of a.
func (k *kernelPath) forget(a *allocations.Allocation) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	for _, o := range k.byAlloc[a] {
		k.remove(a, o)
	}
	delete(k.byAlloc, a)
}

// remove takes o out of the tables and adds its last counts to a's.
func (k *kernelPath) remove(a *allocations.Allocation, o kernelBinding) {
	toPeer, toClient, err := k.path.Remove(o.b)
	if err != nil {
		k.s.log.Warn("kernel path: last counts not read", "user", a.Username, "err", err)
		return
	}
	addCounts(a, o, toPeer, toClient)
}

// count adds what the kernel relayed since the last count to the
// allocations' counters.
func (k *kernelPath) count() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for a, bs := range k.byAlloc {
		for i := range bs {
			toPeer, toClient, err := k.path.Counts(bs[i].b)
			if err != nil {
				continue
			}
			addCounts(a, bs[i], toPeer, toClient)
			bs[i].toPeer, bs[i].toClient = toPeer, toClient
		}
	}
}

func addCounts(a *allocations.Allocation, o kernelBinding, toPeer, toClient kernelpath.Count) {
	a.ToPeer.AddN(toPeer.Packets-o.toPeer.Packets, toPeer.Bytes-o.toPeer.Bytes)
	a.ToClient.AddN(toClient.Packets-o.toClient.Packets, toClient.Bytes-o.toClient.Bytes)
}

// close counts what is left, detaches the program and lets the tables
// go; syncs after it do nothing.
func (k *kernelPath) close() error {
	k.count()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	clear(k.byAlloc)
	return k.path.Close()
}
