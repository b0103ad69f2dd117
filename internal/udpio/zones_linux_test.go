package udpio

import (
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loopbackIndex is the interface index of "lo".
func loopbackIndex(t *testing.T) uint32 {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no lo interface: %v", err)
	}
	return uint32(lo.Index)
}

// TestRecvKeepsZone: a link-local source read by recvmmsg keeps its zone
// (the sockaddr_in6 scope ID, named by the zone cache) without allocating
// once the name is cached; an unknown index becomes its decimal form.
func TestRecvKeepsZone(t *testing.T) {
	idx := loopbackIndex(t)
	b := NewBatch(1, 0, MaxDatagram, 0)
	b.Zones = &Zones{}
	name := &b.names[0]
	name.Family = unix.AF_INET6
	name.Addr = netip.MustParseAddr("fe80::1234").As16()
	name.Scope_id = idx
	*(*[2]byte)(unsafe.Pointer(&name.Port)) = [2]byte{0x0d, 0x96} // 3478
	b.hdrs[0].len = 4
	_, from, ok := b.Msg(0)
	if !ok || from != netip.MustParseAddrPort("[fe80::1234%lo]:3478") {
		t.Fatalf("decoded %v (%v), want [fe80::1234%%lo]:3478", from, ok)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _, _ = b.Msg(0) }); n != 0 {
		t.Errorf("%v allocations per zoned datagram, want 0", n)
	}
	name.Scope_id = 0
	if _, from, _ := b.Msg(0); from.Addr().Zone() != "" {
		t.Errorf("scope 0 decoded with zone %q", from.Addr().Zone())
	}
	name.Scope_id = 1<<31 - 7 // no such interface
	if _, from, _ := b.Msg(0); from.Addr().Zone() != "2147483641" {
		t.Errorf("unknown scope decoded with zone %q, want its number", from.Addr().Zone())
	}
	// Without a cache (relay sockets: peers carry no zone) the zone goes.
	b.Zones = nil
	name.Scope_id = idx
	if _, from, _ := b.Msg(0); from.Addr().Zone() != "" {
		t.Errorf("no cache: zone %q kept", from.Addr().Zone())
	}
}

// TestSendSetsScope: a zoned destination leaves with its scope ID, a
// zoneless one with none.
func TestSendSetsScope(t *testing.T) {
	idx := loopbackIndex(t)
	conn, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer conn.Close()
	out := mustSocket(t, conn)
	s := NewSender()
	s.Zones = &Zones{}
	// The sends may fail (fe80::1234 need not exist): what matters is the
	// sockaddr they were given.
	zoned, payload := netip.MustParseAddrPort("[fe80::1234%lo]:9"), []byte("x")
	_ = s.Send(out, payload, nil, zoned)
	if s.sa6.Scope_id != idx {
		t.Errorf("scope ID %d, want lo's %d", s.sa6.Scope_id, idx)
	}
	if n := testing.AllocsPerRun(100, func() {
		_ = s.Send(out, payload, nil, zoned)
	}); n != 0 {
		t.Errorf("%v allocations per zoned send, want 0", n)
	}
	_ = s.Send(out, []byte("x"), nil, netip.MustParseAddrPort("[::1]:9"))
	if s.sa6.Scope_id != 0 {
		t.Errorf("zoneless destination sent with scope ID %d", s.sa6.Scope_id)
	}
}
