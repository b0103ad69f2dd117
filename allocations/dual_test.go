package allocations

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// newDualAlloc binds an IPv4 and an IPv6 relay socket on loopback from
// pool and returns a dual allocation holding them, not yet created.
func newDualAlloc(t *testing.T, pool *PortPool, i int) *Allocation {
	t.Helper()
	c4, err := pool.ListenUDP(loopback)
	if err != nil {
		t.Fatal(err)
	}
	c6, err := pool.ListenUDP(netip.IPv6Loopback())
	if err != nil {
		c4.Close()
		t.Skipf("no IPv6 loopback: %v", err)
	}
	a := newAlloc(i, "u")
	a.Conn, a.Relayed = c4, c4.LocalAddr().(*net.UDPAddr).AddrPort()
	a.Half6 = &Half6{Conn: c6, Relayed: c6.LocalAddr().(*net.UDPAddr).AddrPort()}
	return a
}

// TestDualAllocationHalves: the halves of a dual allocation are indexed by
// both relayed addresses, count once against quotas, refresh on their own
// (RFC 8656 §8.1), and one that expires while the other lives is closed,
// its port released and its family's permissions and channels dropped, the
// other family's kept.
func TestDualAllocationHalves(t *testing.T) {
	clock := newFakeClock()
	pool := NewPortPool(freeRange(t, 8))
	tab := NewTable(Config{Now: clock.Now, Ports: pool, UserQuota: 1})
	defer tab.Close()
	a := newDualAlloc(t, pool, 1)
	if err := tab.Create(a, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if tab.ByRelayed(a.Relayed) != a || tab.ByRelayed(a.Half6.Relayed) != a || tab.UserCount("u") != 1 || tab.Len() != 1 {
		t.Fatal("a dual allocation must be one allocation under both relayed addresses")
	}
	peer4, peer6 := netip.MustParseAddrPort("127.0.0.1:5000"), netip.MustParseAddrPort("[::1]:5000")
	now := clock.Now()
	for i, p := range []netip.AddrPort{peer4, peer6} {
		if err := a.BindChannel(uint16(0x4000+i), p, now); err != nil {
			t.Fatal(err)
		}
	}
	if c, _, _ := a.ConnFor(peer6.Addr()); c != a.Half6.Conn {
		t.Error("an IPv6 peer is not sent to from the IPv6 socket")
	}
	if c, _, _ := a.ConnFor(netip.MustParseAddr("::ffff:127.0.0.1")); c != a.Conn {
		t.Error("an IPv4-mapped peer is not sent to from the IPv4 socket")
	}
	if !a.RefreshFamily(loopback, time.Hour) {
		t.Fatal("RefreshFamily(IPv4) on a dual allocation")
	}
	clock.Advance(12 * time.Minute) // past the IPv6 half's 10 minutes
	tab.Sweep(clock.Now())
	if tab.Len() != 1 || a.HasFamily(peer6.Addr()) || !a.HasFamily(peer4.Addr()) {
		t.Fatalf("after the IPv6 half expired: len %d, IPv6 %v, IPv4 %v", tab.Len(), a.HasFamily(peer6.Addr()), a.HasFamily(peer4.Addr()))
	}
	if tab.ByRelayed(a.Half6.Relayed) != nil || tab.ByRelayed(a.Relayed) != a {
		t.Error("the expired half's relayed address is still indexed, or the live one is not")
	}
	if pool.marked(netip.IPv6Loopback(), a.Half6.Relayed.Port()) {
		t.Error("the expired half's port was not released")
	}
	if _, err := a.Half6.Conn.WriteToUDPAddrPort([]byte("x"), peer6); err == nil {
		t.Error("the expired half's socket is still open")
	}
	now = clock.Now()
	if _, ok := a.ChannelPeer(0x4001, now); ok || a.Permitted(peer6.Addr(), now) {
		t.Error("the IPv6 channel or permission outlived its half")
	}
	// The IPv4 binding has expired by now too, but is cooling: still there.
	if s := a.state.Load(); s == nil || len(s.chans) != 1 || s.chans[0].peer != peer4 {
		t.Error("the IPv4 channel went with the IPv6 half")
	}
	if got := a.RelayedAddrs(); len(got) != 1 || got[0] != a.Relayed {
		t.Errorf("RelayedAddrs %v, want only the IPv4 one", got)
	}
	if a.RefreshFamily(peer6.Addr(), time.Hour) {
		t.Error("RefreshFamily revived an expired half")
	}
	// Deleting the last half removes the allocation, closing only the
	// socket still open.
	if !tab.DeleteFamily(a, loopback) || tab.Len() != 0 || tab.UserCount("u") != 0 {
		t.Fatal("deleting the last half did not remove the allocation")
	}
	if pool.marked(loopback, a.Relayed.Port()) {
		t.Error("the IPv4 port was not released")
	}
}

// TestConnForAllocatesNothing: picking the socket is on the packet path.
func TestConnForAllocatesNothing(t *testing.T) {
	a := &Allocation{Half6: &Half6{}}
	ips := []netip.Addr{loopback, netip.IPv6Loopback(), netip.MustParseAddr("::ffff:10.0.0.1")}
	if n := testing.AllocsPerRun(1000, func() {
		for _, ip := range ips {
			_, _, _ = a.ConnFor(ip)
		}
	}); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}
