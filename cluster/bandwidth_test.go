package cluster_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/cluster"
	"github.com/postern/postern/internal/redistest"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

func withUserBandwidth(bytesPerSecond int64) nodeOption {
	return func(_ *cluster.Config, r *relay.Config) { r.UserBandwidth = bytesPerSecond }
}

// Figures of TestUserBandwidthAcrossNodes.
const (
	bwCap     = 100_000 // [limits] user_bandwidth, bytes per second each way
	bwOffered = 400_000 // what the client offers through each node, B/s
	bwWarm    = 2 * time.Second
	bwWindow  = 3 * time.Second
	bwPacket  = 1000
)

// relayThroughBoth has one user relay through both nodes at once (one
// pion/turn client per node, each offering bwOffered toward its own peer
// on turntest.PeerIP), and returns the bytes each peer received during
// bwWindow after bwWarm, and in all (bwWarm and bwWindow, from when every
// client starts sending), and for each node the share of the window its
// limiter toward peers spent under the cap (sampled 30 times).
func relayThroughBoth(t *testing.T, nodes ...*node) (window []int64, all int64, shares []float64) {
	t.Helper()
	return relayPhased(t, 0, bwWarm, bwWindow, nodes...)
}

// relayPhased is relayThroughBoth with the clients of nodes[1:] starting
// stagger after the first, and the window of length window counted from
// warm after the first client started.
func relayPhased(t *testing.T, stagger, warm, window time.Duration, nodes ...*node) (counted []int64, all int64, shares []float64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	counts := make([]atomic.Int64, len(nodes))
	var total atomic.Int64
	counting := atomic.Bool{}
	start := make(chan struct{}) // every allocation made: send
	var writeErrs atomic.Int64
	defer func() {
		if n := writeErrs.Load(); n > 0 {
			t.Logf("%d client writes failed", n)
		}
	}()
	for i, n := range nodes {
		peer := turntest.ListenPeer(t)
		relayConn, err := client(t, n.addr).Allocate()
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			buf := make([]byte, 2048)
			for ctx.Err() == nil {
				_ = peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				k, _, err := peer.ReadFrom(buf)
				if err != nil {
					continue
				}
				total.Add(int64(k))
				if counting.Load() {
					counts[i].Add(int64(k))
				}
			}
		})
		wg.Go(func() {
			payload := make([]byte, bwPacket)
			const tick = 5 * time.Millisecond
			perTick := int(bwOffered * tick / time.Second / bwPacket)
			select {
			case <-ctx.Done():
				return
			case <-start:
			}
			if i > 0 && stagger > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(stagger):
				}
			}
			tk := time.NewTicker(tick)
			defer tk.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
				}
				for range perTick {
					if _, err := relayConn.WriteTo(payload, peer.LocalAddr()); err != nil {
						writeErrs.Add(1) // counted, and the client goes on: a stall would move demand
						break
					}
				}
			}
		})
	}
	close(start)
	time.Sleep(warm) // the bursts and the first heartbeats
	counting.Store(true)
	lowered := make([]int, len(nodes)) // samples with the limiter under the cap
	samples := 0
	for end := time.Now().Add(window); time.Now().Before(end); samples++ {
		time.Sleep(window / 30)
		for i, n := range nodes {
			if p, _ := n.Table().UserBandwidthOf(testUser); p > 0 && p < n.Table().UserBandwidth() {
				lowered[i]++
			}
		}
	}
	counting.Store(false)
	all = total.Load()
	counted = make([]int64, len(nodes))
	for i := range counts {
		counted[i] = counts[i].Load()
		shares = append(shares, float64(lowered[i])/float64(samples))
	}
	return counted, all, shares
}

// TestUserBandwidthAcrossNodes: one user relaying through two nodes at
// once stays within the documented bound of user_bandwidth in total
// (cluster/bandwidth.go): over the steady window, the cap plus at most
// 3·H·(k−1)·cap; from the start, that plus each node's one-second burst.
// Each node keeps at least its floor share. Without the fleet each node
// alone lets the full cap through. With Redis down, each node's limiter
// returns to the full cap.
func TestUserBandwidthAcrossNodes(t *testing.T) {
	r := redistest.Start(t)
	const k = 2 // nodes
	window := bwWindow.Seconds()
	extra := 3 * heartbeat.Seconds() * (k - 1) * bwCap
	bound := bwCap*window + extra
	boundAll := bwCap*(bwWarm+bwWindow).Seconds() + extra + k*bwCap // + one burst per node

	t.Run("alone", func(t *testing.T) {
		a := startNode(t, r.URL(), "a", noFleet(), withUserBandwidth(bwCap))
		b := startNode(t, r.URL(), "b", noFleet(), withUserBandwidth(bwCap))
		got, all, _ := relayThroughBoth(t, a, b)
		t.Logf("without the fleet: %d + %d bytes in %v (cap %d B/s), %d from the start", got[0], got[1], bwWindow, bwCap, all)
		if total := float64(got[0] + got[1]); total < 1.8*bwCap*window {
			t.Fatalf("two nodes alone relayed %.0f bytes in %v, want about twice the cap (%.0f)", total, bwWindow, 2*bwCap*window)
		}
	})

	t.Run("fleet", func(t *testing.T) {
		a := startNode(t, r.URL(), "a", withUserBandwidth(bwCap))
		b := startNode(t, r.URL(), "b", withUserBandwidth(bwCap))
		got, all, shares := relayThroughBoth(t, a, b)
		total := float64(got[0] + got[1])
		t.Logf("fleet: %d + %d = %.0f bytes in %v (cap %d B/s: %.0f; bound %.0f); %d from the start (bound %.0f)",
			got[0], got[1], total, bwWindow, bwCap, bwCap*window, bound, all, boundAll)
		if float64(all) > boundAll*1.05 {
			t.Fatalf("the fleet relayed %d bytes in %v from the start, over the bound %.0f", all, bwWarm+bwWindow, boundAll)
		}
		if total > bound*1.05 { // 5 %: the reports are measured rates
			t.Fatalf("the fleet relayed %.0f bytes in %v for one user, over the bound %.0f", total, bwWindow, bound)
		}
		if total < 0.85*bwCap*window {
			t.Fatalf("the fleet relayed %.0f bytes in %v, well under the cap (%.0f)", total, bwWindow, bwCap*window)
		}
		for i, n := range got {
			if float64(n) < 0.4*bwCap*window {
				t.Errorf("node %d relayed %d bytes, under its floor share (cap/2: %.0f)", i, n, bwCap*window/2)
			}
		}
		t.Logf("share of the window each node's limiter spent under the cap: %.2f", shares)
		for i, share := range shares {
			if share < 0.5 {
				t.Fatalf("node %d's limiter was under the cap for %.0f%% of the window, want most of it (the fleet shares the cap)", i, share*100)
			}
		}

		r.Kill()
		turntest.WaitFor(t, "node a's limiter back at the full cap with Redis down", func() bool {
			p, c := a.Table().UserBandwidthOf(testUser)
			return p == bwCap && c == bwCap
		})
		r.Restart()
	})
}

// TestUserBandwidthDemandMoves: the user relays through node a alone
// (which then has the whole cap), then through b as well: over the two
// seconds after b starts, the fleet stays within the documented bound of
// one change (cluster/bandwidth.go: the cap, plus 3·H·(k−1)·cap, plus b's
// burst after idling: one second of its rate, at least 65 535 bytes),
// while two nodes alone would let b's full cap and burst through on top.
func TestUserBandwidthDemandMoves(t *testing.T) {
	r := redistest.Start(t)
	const (
		k       = 2
		stagger = 2 * time.Second
		window  = 2 * time.Second
	)
	bound := bwCap*window.Seconds() + 3*heartbeat.Seconds()*(k-1)*bwCap + max(bwCap/2, 65535)
	run := func(t *testing.T, opts ...nodeOption) float64 {
		a := startNode(t, r.URL(), "a", append(opts, withUserBandwidth(bwCap))...)
		b := startNode(t, r.URL(), "b", append(opts, withUserBandwidth(bwCap))...)
		got, _, _ := relayPhased(t, stagger, stagger, window, a, b)
		t.Logf("%d + %d = %d bytes in the %v after b started (cap %d B/s: %.0f; bound %.0f)",
			got[0], got[1], got[0]+got[1], window, bwCap, bwCap*window.Seconds(), bound)
		return float64(got[0] + got[1])
	}
	t.Run("alone", func(t *testing.T) {
		if total := run(t, noFleet()); total < 1.5*bwCap*window.Seconds()+50_000 {
			t.Fatalf("two nodes alone relayed %.0f bytes, want about twice the cap and b's burst", total)
		}
	})
	t.Run("fleet", func(t *testing.T) {
		if total := run(t); total > bound*1.05 {
			t.Fatalf("the fleet relayed %.0f bytes in the %v after the demand moved, over the bound %.0f", total, window, bound)
		}
	})
}

// TestUserRatesPublished: the registry entry carries the rates of the
// capped users who relayed in the last interval, and nothing without a
// cap.
func TestUserRatesPublished(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a", withUserBandwidth(1_000_000))
	b := startNode(t, r.URL(), "b")
	for _, n := range []*node{a, b} {
		relayConn, err := client(t, n.addr).Allocate()
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, relayConn, turntest.EchoPeer(t).LocalAddr(), 20)
	}
	beat(t, a, b)
	for _, info := range a.fleet.Nodes() {
		if info.Node == "b" && info.Users != nil {
			t.Errorf("node b without a cap published user rates %v", info.Users)
		}
	}
	relayConn, err := client(t, a.addr).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	peer := turntest.EchoPeer(t)
	roundTrip(t, relayConn, peer.LocalAddr(), 20)
	if err := a.fleet.Beat(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.fleet.Beat(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, info := range b.fleet.Nodes() {
		if info.Node == "a" {
			if u := info.Users[testUser]; u.ToPeer <= 0 || u.ToClient <= 0 {
				t.Fatalf("node a's entry: %v, want alice's rates both ways", info.Users)
			}
		}
	}
}
