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

// TestByteRateSetRate: a new rate applies from the next Allow on, the
// spent budget carries over (lowering the rate hands out no new burst),
// and Allow stays allocation-free.
func TestByteRateSetRate(t *testing.T) {
	r := NewByteRate(1_000_000, 0)
	var now int64
	for r.Allow(1000, now) {
	}
	r.SetRate(100_000, 100_000) // one second of debt already spent
	if r.Allow(1000, now) {
		t.Fatal("a lower rate let a packet through a spent budget")
	}
	passed := 0
	for range 10_000 { // 10 simulated seconds, 1 MB/s offered
		now += int64(time.Millisecond)
		if r.Allow(1000, now) {
			passed += 1000
		}
	}
	// 10 s at 100 kB/s, less the second of debt run up at the old rate.
	if passed < 890_000 || passed > 1_002_000 {
		t.Fatalf("%d bytes passed in 10 s after lowering to 100 000 B/s", passed)
	}
	if r.Rate() != 100_000 {
		t.Fatalf("Rate = %d, want 100 000", r.Rate())
	}
	r.SetRate(0, 0) // ignored
	if r.Rate() != 100_000 {
		t.Fatal("SetRate(0) changed the rate")
	}
	if n := testing.AllocsPerRun(1000, func() { r.Allow(100, now) }); n != 0 {
		t.Fatalf("Allow allocates %v", n)
	}
}

// TestByteRateRaised: raising the rate never stalls the limiter, even
// when the lower rate tolerated more debt (its burst raised to 65 535
// bytes): the new rate applies at once.
func TestByteRateRaised(t *testing.T) {
	r := NewByteRate(50_000, 50_000) // burst raised to 65 535 bytes: 1.31 s of debt
	var now int64
	for r.Allow(1000, now) {
	}
	r.SetRate(100_000, 100_000) // 1 s of tolerance
	passed := 0
	for range 300 { // 300 ms, 1 MB/s offered
		now += int64(time.Millisecond)
		if r.Allow(1000, now) {
			passed += 1000
		}
	}
	if passed < 29_000 {
		t.Fatalf("%d bytes passed in the 300 ms after raising the rate to 100 000 B/s, want about 30 000", passed)
	}
}

// TestSetUserBandwidth: the table changes a user's shared limiters, within
// [1, cap], and only while the user holds allocations.
func TestSetUserBandwidth(t *testing.T) {
	tab := NewTable(Config{UserBandwidth: 100_000})
	if tab.UserBandwidth() != 100_000 {
		t.Fatal("UserBandwidth")
	}
	if tab.SetUserBandwidth("alice", 10, 10) {
		t.Fatal("set the limiters of a user without allocations")
	}
	a := &Allocation{FiveTuple: tuple(1, UDP, serverA), User: "alice", Relayed: relayedAddr(1)}
	if err := tab.Create(a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !tab.SetUserBandwidth("alice", 30_000, 1_000_000) {
		t.Fatal("SetUserBandwidth found no limiters")
	}
	if p, c := tab.UserBandwidthOf("alice"); p != 30_000 || c != 100_000 {
		t.Fatalf("rates %d, %d; want 30 000 and the cap 100 000", p, c)
	}
	if p, c := tab.UserBandwidthRefused("alice"); p || c {
		t.Fatal("refusals reported before any packet")
	}
	n := 0
	for a.AllowToPeer(1000, 0) {
		n += 1000
	}
	if n != 65_000 { // the burst: one second's worth, raised to 65 535
		t.Fatalf("lowered limiter passed a burst of %d, want 65 000", n)
	}
	if p, c := tab.UserBandwidthRefused("alice"); !p || c {
		t.Fatalf("refused %v, %v; want toward peers only", p, c)
	}
	if p, _ := tab.UserBandwidthRefused("alice"); p {
		t.Fatal("the refusal mark was not cleared")
	}
}

// BenchmarkByteRateAllow is the per-packet cost of a limiter (one CAS),
// with the rate read through SetRate's pointer.
func BenchmarkByteRateAllow(b *testing.B) {
	r := NewByteRate(1<<40, 0)
	var now int64
	for b.Loop() {
		now++
		r.Allow(1200, now)
	}
}
