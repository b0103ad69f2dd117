package allocations

import (
	"net/netip"
	"testing"
	"time"
)

// TestRoute: Route agrees with Permitted and PeerChannel, in one lock-free,
// allocation-free look.
func TestRoute(t *testing.T) {
	a := &Allocation{}
	now := time.Unix(1000, 0)
	chanPeer := netip.MustParseAddrPort("192.0.2.1:5000")
	permOnly := netip.MustParseAddrPort("192.0.2.2:6000")
	stranger := netip.MustParseAddrPort("192.0.2.3:7000")
	if err := a.BindChannel(0x4001, chanPeer, now); err != nil {
		t.Fatal(err)
	}
	if err := a.Permit(permOnly.Addr(), now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peer        netip.AddrPort
		at          time.Time
		perm, bound bool
		number      uint16
	}{
		{chanPeer, now, true, true, 0x4001},
		{netip.AddrPortFrom(netip.AddrFrom16(chanPeer.Addr().As16()), chanPeer.Port()), now, true, true, 0x4001}, // mapped form
		{permOnly, now, true, false, 0},
		{stranger, now, false, false, 0},
		{chanPeer, now.Add(PermissionLifetime + time.Second), false, false, 0},
	} {
		perm, number, bound := a.Route(tc.peer, tc.at)
		if perm != tc.perm || bound != tc.bound || number != tc.number {
			t.Errorf("Route(%v) = %v, %#x, %v; want %v, %#x, %v", tc.peer, perm, number, bound, tc.perm, tc.number, tc.bound)
		}
		if perm != a.Permitted(tc.peer.Addr(), tc.at) {
			t.Errorf("Route and Permitted disagree on %v", tc.peer)
		}
	}
	if n := testing.AllocsPerRun(1000, func() { a.Route(chanPeer, now) }); n != 0 {
		t.Errorf("Route allocates %v", n)
	}
}
