package relay

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
)

// fakeClock drives a sourceLimiter's clock by hand.
type fakeClock struct{ ns int64 }

func (c *fakeClock) now() int64 { return c.ns }

func testLimiter(unauthRate float64, unauthBurst int, bindingRate float64, bindingBurst int) (*sourceLimiter, *fakeClock) {
	l := newSourceLimiter(unauthRate, unauthBurst, bindingRate, bindingBurst)
	c := &fakeClock{}
	l.now = c.now
	return l, c
}

func v4(i int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 0x0a000000|uint32(i)) // 10.0.0.0/8
	return netip.AddrFrom4(b)
}

// v6 returns address i within the /64 numbered net (2001:db8:NET::/64).
func v6(net, i uint64) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint32(b[:4], 0x20010db8)
	binary.BigEndian.PutUint32(b[4:8], uint32(net))
	binary.BigEndian.PutUint64(b[8:], i)
	return netip.AddrFrom16(b)
}

// drain spends ip's whole budget of kind k and returns how much it was.
func drain(l *sourceLimiter, ip netip.Addr, k answerKind) int {
	n := 0
	for l.allow(ip, k) {
		n++
		if n > 1e6 {
			panic("limiter never refuses")
		}
	}
	return n
}

func TestSourceLimiterBucket(t *testing.T) {
	l, clock := testLimiter(10, 20, 100, 5)
	ip := netip.MustParseAddr("192.0.2.1")
	if n := drain(l, ip, answerUnauth); n != 20 {
		t.Errorf("burst: %d answers, want 20", n)
	}
	// The Binding budget is separate and untouched.
	if n := drain(l, ip, answerBinding); n != 5 {
		t.Errorf("Binding burst after the unauthenticated one: %d, want 5", n)
	}
	clock.ns += 1e9 / 2 // half a second: 5 unauthenticated tokens, the Binding bucket full again
	if n := drain(l, ip, answerUnauth); n != 5 {
		t.Errorf("after 0.5 s at 10/s: %d answers, want 5", n)
	}
	if n := drain(l, ip, answerBinding); n != 5 {
		t.Errorf("Binding after 0.5 s at 100/s, burst 5: %d, want 5", n)
	}
	// ::ffff:192.0.2.1 is the same source.
	if l.allow(netip.MustParseAddr("::ffff:192.0.2.1"), answerUnauth) {
		t.Error("the IPv4-mapped spelling of a drained address got a fresh budget")
	}
	// An unlimited kind is never refused.
	u, _ := testLimiter(10, 1, 0, 0)
	for range 100 {
		if !u.allow(ip, answerBinding) {
			t.Fatal("Binding refused with no Binding limit")
		}
	}
	if newSourceLimiter(0, 5, 0, 5) != nil {
		t.Error("a limiter with no limit at all is not nil")
	}
}

// TestSourceLimiterIPv6Prefix: the addresses of one IPv6 /64 share one
// budget; another /64 has its own.
func TestSourceLimiterIPv6Prefix(t *testing.T) {
	l, _ := testLimiter(1, 10, 0, 0)
	spent := 0
	for i := range uint64(1000) {
		if l.allow(v6(1, i*7919+1), answerUnauth) {
			spent++
		}
	}
	if spent != 10 {
		t.Errorf("1000 addresses of one /64 got %d answers, want the one burst of 10", spent)
	}
	if !l.allow(v6(2, 1), answerUnauth) {
		t.Error("another /64 was refused")
	}
	if n := l.sources(); n != 2 {
		t.Errorf("the limiter holds %d sources, want 2 (/64s)", n)
	}
}

// TestFloodFromOnePrefixStarvesNoOne is issue 12 finding 3: 8192 addresses
// of one /64 drained the old hashed buckets so that 1000 of 1000 never-seen
// IPv4 clients got no challenge. Now every one of them is answered.
func TestFloodFromOnePrefixStarvesNoOne(t *testing.T) {
	l, _ := testLimiter(0.001, 20, 0, 0)
	for i := range uint64(8192) {
		for l.allow(v6(1, i), answerUnauth) {
		}
	}
	for i := range 1000 {
		if !l.allow(v4(i), answerUnauth) {
			t.Fatalf("never-seen client %v got no answer after a flood from one /64", v4(i))
		}
	}
}

// TestFloodFromManyAddressesStarvesNoOne: drained sources beyond the
// table's capacity are forgotten, oldest first, and a client among them is
// answered again; a client seen recently keeps its state.
func TestFloodFromManyAddressesStarvesNoOne(t *testing.T) {
	l, _ := testLimiter(0.001, 2, 0, 0)
	l.cap = 1000
	victim := netip.MustParseAddr("198.51.100.7")
	drain(l, victim, answerUnauth)
	for i := range 5000 {
		drain(l, v4(i), answerUnauth)
		if i%100 == 0 && l.allow(victim, answerUnauth) {
			t.Fatal("a recently seen drained source got a fresh budget")
		}
	}
	if n := l.sources(); n != 1000 {
		t.Errorf("the limiter holds %d sources, want its capacity 1000", n)
	}
	for i := range 1000 {
		if !l.allow(v4(i), answerUnauth) { // forgotten long ago
			t.Fatalf("client %v, drained then forgotten, got no answer", v4(i))
		}
	}
}

// TestLimiterMemoryBounded floods the limiter from a million distinct
// sources, IPv4 and IPv6, and checks it holds at most limiterCapacity of
// them in bounded memory (limiterCapacity's comment quotes the figure).
func TestLimiterMemoryBounded(t *testing.T) {
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	l, clock := testLimiter(DefaultUnauthenticatedRate, DefaultUnauthenticatedBurst, DefaultBindingRate, DefaultBindingBurst)
	for i := range 1 << 20 {
		clock.ns += 1000
		ip := v4(i)
		if i%2 == 1 {
			ip = v6(uint64(i), 1)
		}
		l.allow(ip, answerKind(i%2))
	}
	if n := l.sources(); n != limiterCapacity {
		t.Errorf("after a flood from 2^20 sources the limiter holds %d, want %d", n, limiterCapacity)
	}
	growth := int64(heap()) - int64(before)
	perSource := float64(growth) / limiterCapacity
	t.Logf("limiter memory after 2^20 sources: %d bytes, %.0f per remembered source", growth, perSource)
	const bound = 8 << 20
	if growth > bound {
		t.Errorf("limiter grew %d bytes, bound %d", growth, bound)
	}
	runtime.KeepAlive(l)
}

// BenchmarkSourceLimiter is the cost of one decision, for a source already
// remembered and for a new one evicting the oldest.
func BenchmarkSourceLimiter(b *testing.B) {
	b.Run("known", func(b *testing.B) {
		l := newSourceLimiter(1e9, 1e9, 0, 0)
		ip := netip.MustParseAddr("192.0.2.1")
		for b.Loop() {
			l.allow(ip, answerUnauth)
		}
	})
	b.Run("new", func(b *testing.B) {
		l := newSourceLimiter(1, 1, 0, 0)
		i := 0
		for b.Loop() {
			l.allow(v4(i), answerUnauth)
			i++
		}
	})
}
