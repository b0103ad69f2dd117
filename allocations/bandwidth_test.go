package allocations

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestByteRate(t *testing.T) {
	const rate = 100_000 // bytes per second; burst raised to 100 000
	r := NewByteRate(rate, 0)
	var now int64
	sent := 0
	for r.Allow(1000, now) {
		sent += 1000
	}
	if sent != rate {
		t.Fatalf("burst let %d bytes through, want %d", sent, rate)
	}
	// Over the next 10 simulated seconds, 1000-byte packets every 1 ms
	// (1 MB/s offered) get through at the limit.
	passed := 0
	for range 10_000 {
		now += int64(time.Millisecond)
		if r.Allow(1000, now) {
			passed += 1000
		}
	}
	if passed < 10*rate-2000 || passed > 10*rate+2000 {
		t.Fatalf("%d bytes passed in 10 s at %d B/s", passed, rate)
	}
	var nilRate *ByteRate
	if !nilRate.Allow(1<<20, now) || NewByteRate(0, 0) != nil {
		t.Fatal("a nil or zero limiter must allow everything")
	}
	if n := testing.AllocsPerRun(1000, func() { r.Allow(100, now) }); n != 0 {
		t.Fatalf("Allow allocates %v", n)
	}
}

func TestByteRateConcurrent(t *testing.T) {
	r := NewByteRate(1_000_000, 0) // burst 1 MB at a frozen clock
	var passed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if r.Allow(1000, 0) {
					passed.Add(1000)
				}
			}
		})
	}
	wg.Wait()
	if got := passed.Load(); got != 1_000_000 {
		t.Fatalf("%d bytes passed concurrently, want exactly the 1 MB burst", got)
	}
}

// TestUserBandwidthShared: a user's allocations share one budget; another
// user has its own; the allocation limit applies on top.
func TestUserBandwidthShared(t *testing.T) {
	tab := NewTable(Config{UserBandwidth: 100_000, AllocationBandwidth: 80_000})
	mk := func(i int, user string) *Allocation {
		a := &Allocation{FiveTuple: tuple(i, UDP, serverA), User: user, Relayed: relayedAddr(i)}
		if err := tab.Create(a, time.Minute); err != nil {
			t.Fatal(err)
		}
		return a
	}
	a1, a2, b := mk(1, "alice"), mk(2, "alice"), mk(3, "bob")
	spend := func(a *Allocation) (n int) {
		for a.AllowToPeer(1000, 0) {
			n += 1000
		}
		return n
	}
	if n := spend(a1); n != 80_000 {
		t.Fatalf("first allocation passed %d, want its own 80 000 limit", n)
	}
	if n := spend(a2); n != 20_000 {
		t.Fatalf("second allocation passed %d, want the user's remaining 20 000", n)
	}
	if n := spend(b); n != 80_000 {
		t.Fatalf("another user passed %d, want 80 000", n)
	}
	if !a1.AllowToClient(1000, 0) {
		t.Fatal("the other direction has its own budget")
	}
	// The user's limiter goes with its last allocation.
	tab.Delete(a1.FiveTuple)
	tab.Delete(a2.FiveTuple)
	if n := spend(mk(4, "alice")); n != 80_000 {
		t.Fatalf("new allocation after the user's others ended passed %d, want a fresh 80 000", n)
	}
}
