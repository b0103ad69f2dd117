package allocations

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct{ n atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.n.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.n.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.n.Add(int64(d)) }

var (
	serverA = netip.MustParseAddrPort("192.0.2.1:3478")
	serverB = netip.MustParseAddrPort("192.0.2.2:3478")
)

// tuple returns a distinct client 5-tuple for i.
func tuple(i int, tr Transport, server netip.AddrPort) FiveTuple {
	return FiveTuple{
		Client:    netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(40000+i%20000)),
		Server:    server,
		Transport: tr,
	}
}

// relayedAddr returns a distinct relayed address for i.
func relayedAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("203.0.113.1"), uint16(1024+i%60000))
}

func newAlloc(i int, user string) *Allocation {
	return &Allocation{
		FiveTuple: tuple(i, UDP, serverA),
		Username:  "1767225600:" + user,
		User:      user,
		Key:       make([]byte, 16),
		Relayed:   relayedAddr(i),
	}
}

// removal records OnRemove calls.
type removal struct {
	mu      sync.Mutex
	reasons map[*Allocation][]Reason
}

func (r *removal) onRemove(a *Allocation, why Reason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reasons == nil {
		r.reasons = make(map[*Allocation][]Reason)
	}
	r.reasons[a] = append(r.reasons[a], why)
}

func (r *removal) get(a *Allocation) []Reason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reasons[a]
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestCreateGetDelete(t *testing.T) {
	var rm removal
	tab := NewTable(Config{OnRemove: rm.onRemove})
	a := newAlloc(1, "alice")
	if err := tab.Create(a, 10*time.Minute); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := tab.Get(a.FiveTuple); got != a {
		t.Fatalf("Get = %p, want %p", got, a)
	}
	other := a.FiveTuple
	other.Transport = TCP
	if got := tab.Get(other); got != nil {
		t.Fatalf("Get(other transport) = %p, want nil", got)
	}
	if got := tab.ByRelayed(a.Relayed); got != a {
		t.Fatalf("ByRelayed = %p, want %p", got, a)
	}
	if tab.Len() != 1 || tab.UserCount("alice") != 1 {
		t.Fatalf("Len, UserCount = %d, %d, want 1, 1", tab.Len(), tab.UserCount("alice"))
	}
	if a.Created.IsZero() {
		t.Error("Created not set")
	}
	done := a.Done()
	if isClosed(done) {
		t.Fatal("Done closed before removal")
	}

	if !tab.Delete(a.FiveTuple) {
		t.Fatal("Delete = false, want true")
	}
	if tab.Delete(a.FiveTuple) {
		t.Fatal("second Delete = true, want false")
	}
	if tab.Get(a.FiveTuple) != nil || tab.ByRelayed(a.Relayed) != nil {
		t.Fatal("allocation still indexed after Delete")
	}
	if tab.Len() != 0 || tab.UserCount("alice") != 0 {
		t.Fatalf("Len, UserCount = %d, %d, want 0, 0", tab.Len(), tab.UserCount("alice"))
	}
	if !isClosed(done) || !isClosed(a.Done()) {
		t.Fatal("Done not closed after Delete")
	}
	if got := rm.get(a); len(got) != 1 || got[0] != ReasonDeleted {
		t.Fatalf("OnRemove reasons = %v, want [deleted]", got)
	}
}

func TestCreateErrors(t *testing.T) {
	tab := NewTable(Config{})
	a := newAlloc(1, "alice")
	if err := tab.Create(a, time.Minute); err != nil {
		t.Fatal(err)
	}
	sameTuple := newAlloc(1, "bob")
	sameTuple.Relayed = relayedAddr(999)
	sameRelayed := newAlloc(2, "bob")
	sameRelayed.Relayed = a.Relayed
	noClient := newAlloc(3, "bob")
	noClient.FiveTuple.Client = netip.AddrPort{}
	noTransport := newAlloc(4, "bob")
	noTransport.FiveTuple.Transport = 0

	tests := []struct {
		name     string
		a        *Allocation
		lifetime time.Duration
		want     error // nil: any non-nil error
	}{
		{"same 5-tuple", sameTuple, time.Minute, ErrExists},
		{"same relayed address", sameRelayed, time.Minute, ErrExists},
		{"created twice", a, time.Minute, ErrExists},
		{"invalid client", noClient, time.Minute, nil},
		{"invalid transport", noTransport, time.Minute, nil},
		{"zero lifetime", newAlloc(5, "bob"), 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tab.Create(tt.a, tt.lifetime)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Create = %v, want %v", err, tt.want)
			}
		})
	}
	if tab.Len() != 1 || tab.UserCount("bob") != 0 {
		t.Fatalf("failed Creates changed the table: Len %d, bob %d", tab.Len(), tab.UserCount("bob"))
	}
}

func TestSameClientOtherTransportOrServer(t *testing.T) {
	tab := NewTable(Config{})
	base := tuple(1, UDP, serverA)
	for i, ft := range []FiveTuple{
		base,
		{Client: base.Client, Server: base.Server, Transport: TCP},
		{Client: base.Client, Server: base.Server, Transport: TLS},
		{Client: base.Client, Server: serverB, Transport: UDP},
	} {
		a := &Allocation{FiveTuple: ft, User: "u", Relayed: relayedAddr(i)}
		if err := tab.Create(a, time.Minute); err != nil {
			t.Fatalf("Create %v: %v", ft, err)
		}
		if tab.Get(ft) != a {
			t.Fatalf("Get %v: wrong allocation", ft)
		}
	}
	if tab.Len() != 4 {
		t.Fatalf("Len = %d, want 4", tab.Len())
	}
}

func TestQuota(t *testing.T) {
	clock := newFakeClock()
	tab := NewTable(Config{UserQuota: 1, Now: clock.Now})
	first := &Allocation{FiveTuple: tuple(1, UDP, serverA), User: "alice", Relayed: relayedAddr(1)}
	if err := tab.Create(first, time.Minute); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ft   FiveTuple
		user string
		want error
	}{
		{"other transport", tuple(2, TCP, serverA), "alice", ErrQuota},
		{"TLS", tuple(3, TLS, serverA), "alice", ErrQuota},
		{"other server address", tuple(4, UDP, serverB), "alice", ErrQuota},
		{"other user", tuple(5, UDP, serverA), "bob", nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Allocation{FiveTuple: tt.ft, User: tt.user, Relayed: relayedAddr(100 + i)}
			if err := tab.Create(a, time.Minute); !errors.Is(err, tt.want) {
				t.Fatalf("Create = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("freed on delete", func(t *testing.T) {
		tab.Delete(first.FiveTuple)
		again := &Allocation{FiveTuple: tuple(6, TCP, serverB), User: "alice", Relayed: relayedAddr(6)}
		if err := tab.Create(again, time.Minute); err != nil {
			t.Fatalf("Create after Delete: %v", err)
		}
	})
	t.Run("freed on expiry", func(t *testing.T) {
		clock.Advance(time.Minute)
		tab.Sweep(clock.Now())
		if n := tab.UserCount("alice"); n != 0 {
			t.Fatalf("UserCount after expiry = %d, want 0", n)
		}
		again := &Allocation{FiveTuple: tuple(7, UDP, serverA), User: "alice", Relayed: relayedAddr(7)}
		if err := tab.Create(again, time.Minute); err != nil {
			t.Fatalf("Create after expiry: %v", err)
		}
	})
}

// TestQuotaRace: many goroutines create allocations for one user at once;
// exactly UserQuota succeed.
func TestQuotaRace(t *testing.T) {
	const quota, goroutines, rounds = 3, 32, 20
	for round := range rounds {
		tab := NewTable(Config{UserQuota: quota})
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			ok    atomic.Int32
		)
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr := []Transport{UDP, TCP, TLS}[g%3]
				a := &Allocation{FiveTuple: tuple(g, tr, serverA), User: "alice", Relayed: relayedAddr(g)}
				<-start
				switch err := tab.Create(a, time.Minute); {
				case err == nil:
					ok.Add(1)
				case !errors.Is(err, ErrQuota):
					t.Errorf("Create: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if ok.Load() != quota || tab.UserCount("alice") != quota || tab.Len() != quota {
			t.Fatalf("round %d: %d succeeded, UserCount %d, Len %d; want %d", round,
				ok.Load(), tab.UserCount("alice"), tab.Len(), quota)
		}
	}
}

func TestSweepExpiry(t *testing.T) {
	clock := newFakeClock()
	var rm removal
	tab := NewTable(Config{Now: clock.Now, OnRemove: rm.onRemove})
	short, long := newAlloc(1, "u"), newAlloc(2, "u")
	if err := tab.Create(short, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tab.Create(long, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if want := clock.Now().Add(10 * time.Second); !short.Expires().Equal(want) {
		t.Fatalf("Expires = %v, want %v", short.Expires(), want)
	}

	tab.Sweep(clock.Now().Add(10*time.Second - 1))
	if tab.Len() != 2 {
		t.Fatalf("swept before expiry: Len %d", tab.Len())
	}
	clock.Advance(10 * time.Second)
	long.Refresh(time.Minute) // long now expires at +70 s
	tab.Sweep(clock.Now())    // expiry == now: expired
	if tab.Get(short.FiveTuple) != nil || tab.Get(long.FiveTuple) != long {
		t.Fatal("Sweep removed the wrong allocations")
	}
	if got := rm.get(short); len(got) != 1 || got[0] != ReasonExpired {
		t.Fatalf("OnRemove(short) = %v, want [expired]", got)
	}
	if !isClosed(short.Done()) || isClosed(long.Done()) {
		t.Fatal("Done state wrong")
	}

	clock.Advance(59 * time.Second)
	tab.Sweep(clock.Now())
	if tab.Len() != 1 {
		t.Fatal("refreshed allocation swept early")
	}
	clock.Advance(time.Second)
	tab.Sweep(clock.Now())
	if tab.Len() != 0 || tab.UserCount("u") != 0 || tab.ByRelayed(long.Relayed) != nil {
		t.Fatal("refreshed allocation not swept at its expiry")
	}
}

func TestRun(t *testing.T) {
	clock := newFakeClock()
	tab := NewTable(Config{Now: clock.Now})
	a := newAlloc(1, "u")
	if err := tab.Create(a, time.Minute); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		tab.Run(ctx)
	}()
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not sweep the expired allocation within 5 s")
	}
	cancel()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestClose(t *testing.T) {
	var rm removal
	tab := NewTable(Config{OnRemove: rm.onRemove})
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var as []*Allocation
	for i := range 100 {
		a := newAlloc(i, fmt.Sprint("user", i%7))
		if i == 0 {
			a.Conn = conn
		}
		if err := tab.Create(a, time.Minute); err != nil {
			t.Fatal(err)
		}
		as = append(as, a)
	}
	tab.Close()
	if tab.Len() != 0 || tab.UserCount("user0") != 0 {
		t.Fatalf("Len %d, UserCount %d after Close", tab.Len(), tab.UserCount("user0"))
	}
	for _, a := range as {
		if got := rm.get(a); len(got) != 1 || got[0] != ReasonClosed {
			t.Fatalf("OnRemove = %v, want [closed]", got)
		}
		if !isClosed(a.Done()) {
			t.Fatal("Done not closed")
		}
	}
	if _, _, err := conn.ReadFromUDPAddrPort(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("relay socket not closed: read error %v", err)
	}
	if err := tab.Create(newAlloc(1000, "u"), time.Minute); !errors.Is(err, ErrClosed) {
		t.Fatalf("Create after Close = %v, want ErrClosed", err)
	}
	tab.Close() // idempotent
}

// TestOnRemoveReentrant: OnRemove runs outside the table's locks, so it may
// call back into the table.
func TestOnRemoveReentrant(t *testing.T) {
	var tab *Table
	calls := 0
	tab = NewTable(Config{OnRemove: func(a *Allocation, _ Reason) {
		calls++
		_ = tab.Len()
		_ = tab.UserCount(a.User)
		_ = tab.ByRelayed(a.Relayed)
		if tab.Get(a.FiveTuple) != nil {
			t.Error("removed allocation still visible in OnRemove")
		}
		if calls == 1 {
			if err := tab.Create(newAlloc(99, "u"), time.Minute); err != nil {
				t.Errorf("Create from OnRemove: %v", err)
			}
		}
	}})
	if err := tab.Create(newAlloc(1, "u"), time.Minute); err != nil {
		t.Fatal(err)
	}
	tab.Delete(tuple(1, UDP, serverA))
	if calls != 1 || tab.Len() != 1 {
		t.Fatalf("calls %d, Len %d; want 1, 1", calls, tab.Len())
	}
}

func TestRange(t *testing.T) {
	tab := NewTable(Config{})
	for i := range 200 {
		if err := tab.Create(newAlloc(i, "u"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[*Allocation]bool{}
	tab.Range(func(a *Allocation) bool {
		seen[a] = true
		return true
	})
	if len(seen) != 200 {
		t.Fatalf("Range saw %d, want 200", len(seen))
	}
	n := 0
	tab.Range(func(*Allocation) bool {
		n++
		return n < 5
	})
	if n != 5 {
		t.Fatalf("Range did not stop: %d calls", n)
	}
}

// TestShardSpread: clients differing only in port, or only in address,
// spread over every shard.
func TestShardSpread(t *testing.T) {
	const n = 64 * 200
	tests := []struct {
		name string
		ft   func(i int) FiveTuple
	}{
		{"ports of one IPv4 address", func(i int) FiveTuple {
			return FiveTuple{Client: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), uint16(i)), Transport: UDP}
		}},
		{"IPv4 addresses, one port", func(i int) FiveTuple {
			return FiveTuple{Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5000), Transport: UDP}
		}},
		{"IPv4-mapped addresses, one port", func(i int) FiveTuple {
			a := netip.AddrFrom16(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).As16())
			return FiveTuple{Client: netip.AddrPortFrom(a, 5000), Transport: UDP}
		}},
		{"ports of one IPv6 address", func(i int) FiveTuple {
			return FiveTuple{Client: netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), uint16(i)), Transport: UDP}
		}},
		{"IPv6 addresses, one port", func(i int) FiveTuple {
			a := netip.MustParseAddr("2001:db8::").As16()
			a[14], a[15] = byte(i>>8), byte(i)
			return FiveTuple{Client: netip.AddrPortFrom(netip.AddrFrom16(a), 5000), Transport: UDP}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var counts [numShards]int
			for i := range n {
				ft := tt.ft(i)
				counts[shardOf(&ft)]++
			}
			for s, c := range counts {
				if c < n/numShards/2 || c > n/numShards*2 {
					t.Fatalf("shard %d holds %d of %d (want within 2x of %d): %v", s, c, n, n/numShards, counts)
				}
			}
		})
	}
}

func TestTableReleasesPorts(t *testing.T) {
	r := freeRange(t, 1)
	pool := NewPortPool(r)
	tab := NewTable(Config{Ports: pool})
	conn, err := pool.ListenUDP(loopback)
	if err != nil {
		t.Fatal(err)
	}
	a := newAlloc(1, "u")
	a.Conn = conn
	a.Relayed = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := tab.Create(a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.ListenUDP(loopback); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("ListenUDP with the only port in use = %v, want ErrNoPorts", err)
	}
	tab.Delete(a.FiveTuple)
	if pool.marked(loopback, r.Low) {
		t.Fatal("table did not release the port to the pool")
	}
	c2, err := pool.ListenUDP(loopback)
	if err != nil {
		t.Fatalf("ListenUDP after Delete: %v", err)
	}
	c2.Close()
}

// TestConcurrentReaders runs the packet-path readers in tight loops while a
// writer changes permissions, channels and the table. Run with -race.
func TestConcurrentReaders(t *testing.T) {
	clock := newFakeClock()
	tab := NewTable(Config{Now: clock.Now})
	stable := newAlloc(0, "stable")
	if err := tab.Create(stable, time.Hour); err != nil {
		t.Fatal(err)
	}
	now := clock.Now()
	peer := netip.MustParseAddrPort("198.51.100.1:5000")
	if err := stable.BindChannel(0x4000, peer, now); err != nil {
		t.Fatal(err)
	}

	const readers, readerIters, writerIters = 4, 20000, 1000
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range readerIters {
				if i%256 == 0 && isClosed(stop) {
					return
				}
				if tab.Get(stable.FiveTuple) != stable {
					t.Error("Get(stable) wrong")
					return
				}
				ft := tuple(1+(i+r)%50, UDP, serverA)
				if a := tab.Get(ft); a != nil && a.FiveTuple != ft {
					t.Error("Get returned another 5-tuple's allocation")
					return
				}
				if !stable.Permitted(peer.Addr(), now) {
					t.Error("Permitted(peer) = false")
					return
				}
				if p, ok := stable.ChannelPeer(0x4000, now); !ok || p != peer {
					t.Errorf("ChannelPeer = %v, %v", p, ok)
					return
				}
				if n, ok := stable.PeerChannel(peer, now); !ok || n != 0x4000 {
					t.Errorf("PeerChannel = %#x, %v", n, ok)
					return
				}
				stable.ChannelPeer(uint16(0x4001+i%100), now)
			}
		}()
	}

	for i := range writerIters {
		other := netip.AddrFrom4([4]byte{198, 51, 100, byte(2 + i%100)})
		if err := stable.Permit(other, now); err != nil {
			t.Fatal(err)
		}
		k := i % 100
		if err := stable.BindChannel(uint16(0x4001+k), netip.AddrPortFrom(other, uint16(6000+k)), now); err != nil {
			t.Fatal(err)
		}
		j := 1 + i%50
		if !tab.Delete(tuple(j, UDP, serverA)) {
			if err := tab.Create(newAlloc(j, "other"), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if i%100 == 0 {
			tab.Sweep(now)
		}
	}
	close(stop)
	wg.Wait()
}

// fillTable returns a table of n allocations and their 5-tuples.
func fillTable(tb testing.TB, n int) (*Table, []FiveTuple) {
	tb.Helper()
	tab := NewTable(Config{})
	fts := make([]FiveTuple, n)
	for i := range n {
		a := newAlloc(i, fmt.Sprint("user", i))
		if err := tab.Create(a, time.Hour); err != nil {
			tb.Fatal(err)
		}
		fts[i] = a.FiveTuple
	}
	return tab, fts
}

func BenchmarkGet(b *testing.B) {
	tab, fts := fillTable(b, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(fts))
		for pb.Next() {
			if tab.Get(fts[i]) == nil {
				b.Error("miss")
				return
			}
			if i++; i == len(fts) {
				i = 0
			}
		}
	})
}

// BenchmarkCreateDelete measures the control-plane cost of a shard copy at
// 10 000 allocations.
func BenchmarkCreateDelete(b *testing.B) {
	tab, _ := fillTable(b, 10000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a := newAlloc(20000+i%1000, "bench")
		if err := tab.Create(a, time.Hour); err != nil {
			b.Fatal(err)
		}
		tab.Delete(a.FiveTuple)
		i++
	}
}

// BenchmarkMemoryPerAllocation reports the Go heap held per allocation in a
// table of 10 000 (nil Conn and Sink; 16-byte key; REST-style username),
// idle and with one permission and one channel binding.
func BenchmarkMemoryPerAllocation(b *testing.B) {
	const n = 10000
	for _, withState := range []bool{false, true} {
		name := "idle"
		if withState {
			name = "1perm+1channel"
		}
		b.Run(name, func(b *testing.B) {
			var perAlloc float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				tab := NewTable(Config{})
				for i := range n {
					a := &Allocation{
						FiveTuple: tuple(i, UDP, serverA),
						Username:  fmt.Sprintf("1767225600:user%d", i),
						Key:       make([]byte, 16),
						Relayed:   relayedAddr(i),
					}
					a.User = a.Username[11:]
					if err := tab.Create(a, time.Hour); err != nil {
						b.Fatal(err)
					}
					if withState {
						peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 5000)
						if err := a.BindChannel(0x4000, peer, t0); err != nil {
							b.Fatal(err)
						}
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perAlloc = float64(after.HeapAlloc-before.HeapAlloc) / n
				runtime.KeepAlive(tab)
			}
			b.ReportMetric(perAlloc, "heapB/alloc")
		})
	}
}

// TestShardShrinks: shards copied by maps.Clone keep their peak capacity,
// so emptied shards must be rebuilt smaller.
func TestShardShrinks(t *testing.T) {
	tab, fts := fillTable(t, numShards*100)
	peak := tab.built
	for _, ft := range fts {
		tab.Delete(ft)
	}
	for i := range tab.shards {
		if tab.built[i] > peak[i]/4 || len(*tab.shards[i].Load()) != 0 {
			t.Fatalf("shard %d: built for %d entries after emptying (peak %d)", i, tab.built[i], peak[i])
		}
	}
}

// BenchmarkSweep measures one janitor pass over 10 000 allocations with
// nothing due.
func BenchmarkSweep(b *testing.B) {
	tab, _ := fillTable(b, 10000)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		tab.Sweep(now)
	}
}
