package allocations

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestIPAndTotalQuota(t *testing.T) {
	clock := newFakeClock()
	tab := NewTable(Config{IPQuota: 2, TotalQuota: 3, Now: clock.Now})
	ipA := netip.MustParseAddr("192.0.2.1")
	ipB := netip.MustParseAddr("192.0.2.2")
	at := func(ip netip.Addr, port uint16, tr Transport, user string, rel int) *Allocation {
		return &Allocation{
			FiveTuple: FiveTuple{Client: netip.AddrPortFrom(ip, port), Server: serverA, Transport: tr},
			User:      user, Relayed: relayedAddr(rel),
		}
	}
	steps := []struct {
		name string
		a    *Allocation
		want error
	}{
		{"A first", at(ipA, 1, UDP, "u1", 1), nil},
		{"A second, other user and transport", at(ipA, 2, TCP, "u2", 2), nil},
		{"A third: per-IP quota", at(ipA, 3, TLS, "u3", 3), ErrQuota},
		{"B first", at(ipB, 1, UDP, "u4", 4), nil},
		{"B second: total quota", at(ipB, 2, UDP, "u5", 5), ErrCapacity},
	}
	for _, st := range steps {
		if err := tab.Create(st.a, time.Minute); !errors.Is(err, st.want) {
			t.Fatalf("%s: Create = %v, want %v", st.name, err, st.want)
		}
	}
	if n := tab.IPCount(ipA); n != 2 {
		t.Fatalf("IPCount(A) = %d, want 2", n)
	}
	tab.Delete(steps[0].a.FiveTuple)
	if n := tab.IPCount(ipA); n != 1 {
		t.Fatalf("IPCount(A) after delete = %d, want 1", n)
	}
	if err := tab.Create(at(ipA, 9, UDP, "u6", 9), time.Minute); err != nil {
		t.Fatalf("Create after a delete freed both quotas: %v", err)
	}
	clock.Advance(2 * time.Minute)
	tab.Sweep(clock.Now())
	if n := tab.IPCount(ipA); n != 0 || tab.Len() != 0 {
		t.Fatalf("after expiry: IPCount(A) = %d, Len = %d", n, tab.Len())
	}
}
