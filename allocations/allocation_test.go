package allocations

import (
	"errors"
	"net/netip"
	"testing"
	"time"
	"unsafe"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestPermissions(t *testing.T) {
	a := &Allocation{}
	peer := netip.MustParseAddr("198.51.100.1")
	if a.Permitted(peer, t0) {
		t.Fatal("Permitted before Permit")
	}
	if err := a.Permit(peer, t0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ip   string
		at   time.Duration
		want bool
	}{
		{"at install", "198.51.100.1", 0, true},
		{"IPv4-mapped form", "::ffff:198.51.100.1", 0, true},
		{"just before 300 s", "198.51.100.1", PermissionLifetime - 1, true},
		{"at 300 s", "198.51.100.1", PermissionLifetime, false},
		{"other IP", "198.51.100.2", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.Permitted(netip.MustParseAddr(tt.ip), t0.Add(tt.at)); got != tt.want {
				t.Fatalf("Permitted = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("refresh", func(t *testing.T) {
		if err := a.Permit(netip.MustParseAddr("::ffff:198.51.100.1"), t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if !a.Permitted(peer, t0.Add(PermissionLifetime)) {
			t.Fatal("refresh did not extend the permission")
		}
		if n := len(a.state.Load().perms); n != 1 {
			t.Fatalf("%d permissions for one IP, want 1", n)
		}
	})
	t.Run("prune", func(t *testing.T) {
		a.prune(t0.Add(time.Minute + PermissionLifetime - 1).UnixNano())
		if a.state.Load() == nil {
			t.Fatal("pruned a live permission")
		}
		a.prune(t0.Add(time.Minute + PermissionLifetime).UnixNano())
		if s := a.state.Load(); s != nil {
			t.Fatalf("expired permission not pruned: %+v", s)
		}
	})
	t.Run("invalid address", func(t *testing.T) {
		if err := a.Permit(netip.Addr{}, t0); !errors.Is(err, ErrBadPeer) {
			t.Fatalf("Permit(invalid) = %v, want ErrBadPeer", err)
		}
	})
}

func TestPermissionCapacity(t *testing.T) {
	a := &Allocation{}
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }
	for i := range MaxPermissions {
		if err := a.Permit(ip(i), t0); err != nil {
			t.Fatalf("Permit %d: %v", i, err)
		}
	}
	if err := a.Permit(ip(MaxPermissions), t0); !errors.Is(err, ErrCapacity) {
		t.Fatalf("Permit beyond cap = %v, want ErrCapacity", err)
	}
	if err := a.Permit(ip(0), t0.Add(time.Second)); err != nil {
		t.Fatalf("refresh at cap: %v", err)
	}
	if err := a.BindChannel(0x4000, netip.AddrPortFrom(ip(MaxPermissions), 1), t0); !errors.Is(err, ErrCapacity) {
		t.Fatalf("BindChannel needing a permission beyond cap = %v, want ErrCapacity", err)
	}
	if _, ok := a.ChannelPeer(0x4000, t0); ok {
		t.Fatal("failed BindChannel left a binding")
	}
	// Once the others expire there is room again.
	if err := a.Permit(ip(MaxPermissions), t0.Add(PermissionLifetime)); err != nil {
		t.Fatalf("Permit after expiry: %v", err)
	}
}

func TestBindChannel(t *testing.T) {
	p1 := netip.MustParseAddrPort("198.51.100.1:5000")
	p1port := netip.MustParseAddrPort("198.51.100.1:5001")
	p2 := netip.MustParseAddrPort("198.51.100.2:5000")
	type bind struct {
		number uint16
		peer   netip.AddrPort
		want   error
	}
	tests := []struct {
		name  string
		binds []bind
	}{
		{"lowest number", []bind{{0x4000, p1, nil}}},
		{"highest number", []bind{{0x4FFF, p1, nil}}},
		{"below range", []bind{{0x3FFF, p1, ErrBadChannel}}},
		{"above range", []bind{{0x5000, p1, ErrBadChannel}}},
		{"zero", []bind{{0, p1, ErrBadChannel}}},
		{"0x7FFF (RFC 5766 range)", []bind{{0x7FFF, p1, ErrBadChannel}}},
		{"invalid peer", []bind{{0x4000, netip.AddrPort{}, ErrBadPeer}}},
		{"refresh same number and peer", []bind{{0x4000, p1, nil}, {0x4000, p1, nil}}},
		{"mapped form is the same peer", []bind{{0x4000, p1, nil}, {0x4000, netip.MustParseAddrPort("[::ffff:198.51.100.1]:5000"), nil}}},
		{"number bound to another peer", []bind{{0x4000, p1, nil}, {0x4000, p2, ErrChannelConflict}}},
		{"number bound to another port of the IP", []bind{{0x4000, p1, nil}, {0x4000, p1port, ErrChannelConflict}}},
		{"peer bound to another number", []bind{{0x4000, p1, nil}, {0x4001, p1, ErrChannelConflict}}},
		{"two independent bindings", []bind{{0x4000, p1, nil}, {0x4001, p2, nil}, {0x4002, p1port, nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Allocation{}
			for _, b := range tt.binds {
				if err := a.BindChannel(b.number, b.peer, t0); !errors.Is(err, b.want) || (b.want != nil) != (err != nil) {
					t.Fatalf("BindChannel(%#x, %v) = %v, want %v", b.number, b.peer, err, b.want)
				}
			}
			// Every successful bind is visible both ways and installed a permission.
			for _, b := range tt.binds {
				if b.want != nil {
					continue
				}
				peer := netip.AddrPortFrom(b.peer.Addr().Unmap(), b.peer.Port())
				if got, ok := a.ChannelPeer(b.number, t0); !ok || got != peer {
					t.Fatalf("ChannelPeer(%#x) = %v, %v; want %v", b.number, got, ok, peer)
				}
				if got, ok := a.PeerChannel(b.peer, t0); !ok || got != b.number {
					t.Fatalf("PeerChannel(%v) = %#x, %v; want %#x", b.peer, got, ok, b.number)
				}
				if !a.Permitted(b.peer.Addr(), t0) {
					t.Fatalf("BindChannel did not permit %v", b.peer.Addr())
				}
			}
		})
	}
}

func TestChannelLifetime(t *testing.T) {
	a := &Allocation{}
	peer := netip.MustParseAddrPort("198.51.100.1:5000")
	if err := a.BindChannel(0x4000, peer, t0); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.ChannelPeer(0x4000, t0.Add(ChannelLifetime-1)); !ok {
		t.Fatal("binding dead before 10 minutes")
	}
	if _, ok := a.ChannelPeer(0x4000, t0.Add(ChannelLifetime)); ok {
		t.Fatal("binding alive at 10 minutes")
	}
	if _, ok := a.PeerChannel(peer, t0.Add(ChannelLifetime)); ok {
		t.Fatal("PeerChannel alive at 10 minutes")
	}
	// The permission installed by the bind has its own 300 s lifetime.
	if a.Permitted(peer.Addr(), t0.Add(PermissionLifetime)) {
		t.Fatal("permission from BindChannel outlived 300 s")
	}
	// Refreshing extends the binding and the permission.
	if err := a.BindChannel(0x4000, peer, t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.ChannelPeer(0x4000, t0.Add(5*time.Minute+ChannelLifetime-1)); !ok {
		t.Fatal("refresh did not extend the binding")
	}
	if !a.Permitted(peer.Addr(), t0.Add(5*time.Minute+PermissionLifetime-1)) {
		t.Fatal("refresh did not extend the permission")
	}
}

func TestChannelQuarantine(t *testing.T) {
	p := netip.MustParseAddrPort("198.51.100.1:5000")
	q := netip.MustParseAddrPort("198.51.100.2:5000")
	expired := t0.Add(ChannelLifetime)
	free := expired.Add(ChannelQuarantine)
	tests := []struct {
		name   string
		at     time.Time
		number uint16
		peer   netip.AddrPort
		want   error
	}{
		{"number to other peer while cooling", expired, 0x4000, q, ErrChannelConflict},
		{"number to other peer just before the end", free.Add(-1), 0x4000, q, ErrChannelConflict},
		{"peer to other number while cooling", expired.Add(time.Minute), 0x4001, p, ErrChannelConflict},
		{"same number and peer while cooling", expired.Add(time.Minute), 0x4000, p, nil},
		{"number to other peer after quarantine", free, 0x4000, q, nil},
		{"peer to other number after quarantine", free, 0x4001, p, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Allocation{}
			if err := a.BindChannel(0x4000, p, t0); err != nil {
				t.Fatal(err)
			}
			err := a.BindChannel(tt.number, tt.peer, tt.at)
			if !errors.Is(err, tt.want) || (tt.want != nil) != (err != nil) {
				t.Fatalf("BindChannel = %v, want %v", err, tt.want)
			}
			if err == nil {
				if got, ok := a.ChannelPeer(tt.number, tt.at); !ok || got != tt.peer {
					t.Fatalf("ChannelPeer after rebind = %v, %v", got, ok)
				}
			}
		})
	}

	t.Run("cooling relays nothing and is pruned after quarantine", func(t *testing.T) {
		a := &Allocation{}
		if err := a.BindChannel(0x4000, p, t0); err != nil {
			t.Fatal(err)
		}
		a.prune(expired.UnixNano())
		if s := a.state.Load(); s == nil || len(s.chans) != 1 {
			t.Fatal("cooling binding pruned before its quarantine ended")
		}
		if _, ok := a.ChannelPeer(0x4000, expired); ok {
			t.Fatal("cooling binding relays")
		}
		a.prune(free.UnixNano())
		if s := a.state.Load(); s != nil {
			t.Fatalf("binding not pruned after quarantine: %+v", s)
		}
	})
}

func TestChannelCapacity(t *testing.T) {
	a := &Allocation{}
	peer := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(1000+i))
	}
	for i := range MaxChannels {
		if err := a.BindChannel(uint16(MinChannel+i), peer(i), t0); err != nil {
			t.Fatalf("bind %d: %v", i, err)
		}
	}
	if err := a.BindChannel(uint16(MinChannel+MaxChannels), peer(MaxChannels), t0); !errors.Is(err, ErrCapacity) {
		t.Fatalf("bind beyond cap = %v, want ErrCapacity", err)
	}
	if err := a.BindChannel(MinChannel, peer(0), t0.Add(time.Second)); err != nil {
		t.Fatalf("refresh at cap: %v", err)
	}
}

func TestDone(t *testing.T) {
	t.Run("requested before removal", func(t *testing.T) {
		tab := NewTable(Config{})
		a := newAlloc(1, "u")
		done := a.Done()
		if err := tab.Create(a, time.Minute); err != nil {
			t.Fatal(err)
		}
		if isClosed(done) {
			t.Fatal("closed early")
		}
		tab.Delete(a.FiveTuple)
		if !isClosed(done) {
			t.Fatal("not closed on removal")
		}
	})
	t.Run("requested after removal", func(t *testing.T) {
		tab := NewTable(Config{})
		a := newAlloc(1, "u")
		if err := tab.Create(a, time.Minute); err != nil {
			t.Fatal(err)
		}
		tab.Close()
		if !isClosed(a.Done()) {
			t.Fatal("Done after removal is open")
		}
		a.markRemoved() // second removal must not close twice
	})
}

// TestHotPathAllocs: the packet-path readers allocate nothing.
func TestHotPathAllocs(t *testing.T) {
	tab := NewTable(Config{})
	a := newAlloc(1, "u")
	if err := tab.Create(a, time.Minute); err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddrPort("198.51.100.1:5000")
	mapped := netip.MustParseAddrPort("[::ffff:198.51.100.1]:5000")
	for i := range 4 {
		if err := a.BindChannel(uint16(0x4000+i), netip.AddrPortFrom(peer.Addr(), uint16(6000+i)), t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.BindChannel(0x4010, peer, t0); err != nil {
		t.Fatal(err)
	}
	ft := a.FiveTuple
	tests := []struct {
		name string
		f    func()
	}{
		{"Get", func() { _ = tab.Get(ft) }},
		{"Get miss", func() { _ = tab.Get(FiveTuple{Client: peer, Transport: TCP}) }},
		{"Permitted", func() { _ = a.Permitted(peer.Addr(), t0) }},
		{"Permitted mapped", func() { _ = a.Permitted(mapped.Addr(), t0) }},
		{"ChannelPeer", func() { _, _ = a.ChannelPeer(0x4010, t0) }},
		{"PeerChannel", func() { _, _ = a.PeerChannel(peer, t0) }},
		{"PeerChannel mapped", func() { _, _ = a.PeerChannel(mapped, t0) }},
		{"Expires", func() { _ = a.Expires() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
				t.Fatalf("%v allocations per call, want 0", n)
			}
		})
	}
}

// TestAllocationSize guards the per-allocation memory: the struct fits the
// 384-byte size class of Go's allocator (320 until Raw, which saves an
// allocation per relayed packet, took 16 bytes more; 352 until the TCP
// relay of RFC 6062, the IPv6 half of a dual allocation and the DF and
// ICMP flags took 16 more). Cold state added later goes behind a pointer.
func TestAllocationSize(t *testing.T) {
	if n := unsafe.Sizeof(Allocation{}); n > 384 {
		t.Fatalf("Allocation is %d bytes, want <= 384", n)
	}
}

func BenchmarkPermitted(b *testing.B) {
	a := &Allocation{}
	for i := range 4 {
		if err := a.Permit(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), t0); err != nil {
			b.Fatal(err)
		}
	}
	last := netip.AddrFrom4([4]byte{198, 51, 100, 3})
	b.ReportAllocs()
	for b.Loop() {
		if !a.Permitted(last, t0) {
			b.Fatal("not permitted")
		}
	}
}

func BenchmarkChannelPeer(b *testing.B) {
	a := &Allocation{}
	for i := range 4 {
		if err := a.BindChannel(uint16(0x4000+i), netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 5000), t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := a.ChannelPeer(0x4003, t0); !ok {
			b.Fatal("not bound")
		}
	}
}

func BenchmarkPeerChannel(b *testing.B) {
	a := &Allocation{}
	var last netip.AddrPort
	for i := range 4 {
		last = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 5000)
		if err := a.BindChannel(uint16(0x4000+i), last, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := a.PeerChannel(last, t0); !ok {
			b.Fatal("not bound")
		}
	}
}
