package usage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
	"github.com/redis/go-redis/v9"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/redistest"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/usage"
)

const (
	testRealm = "postern.test"
	testUser  = "alice"
	testPass  = "wonderland"
	testNode  = "node-a"
	// lifetime is the only allocation lifetime the test relay grants:
	// short, so that an allocation nobody refreshes expires within a few
	// seconds (the janitor sweeps once a second).
	lifetime = 2 * time.Second
	// interval is the period of interim records.
	interval = 200 * time.Millisecond
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// silentPion keeps pion's client quiet: the expired allocation's client
// logs its failed refreshes.
func silentPion() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}

// testRelay is an in-process relay.Server on 127.0.0.1 with a UDP
// listener, recording usage into sink; stop shuts it down (the shutdown
// records).
type testRelay struct {
	addr string
	stop func()
}

func startRelay(t *testing.T, sink relay.UsageSink) *testRelay {
	t.Helper()
	a, err := auth.New(auth.Config{Realm: testRealm, Users: map[string]string{testUser: testPass}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := relay.New(relay.Config{
		Listeners:         []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:0"}},
		ListenersExplicit: true,
		Auth:              a,
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		RelayPorts:        allocations.PortRange{Low: 32768, High: 65535},
		DefaultLifetime:   lifetime,
		MaxLifetime:       lifetime,
		Logger:            quiet,
		Usage:             sink,
		UsageInterval:     interval,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			_ = s.Wait()
		}
	}
	t.Cleanup(stop)
	return &testRelay{addr: s.Addrs()[0].Addr.String(), stop: stop}
}

// client is a pion TURN client with an allocation and an echo peer, and
// what it counted relayed each way.
type client struct {
	t        *testing.T
	conn     *net.UDPConn // the client's socket to the server
	relay    net.PacketConn
	peer     net.Addr
	sent     usage.Record // BytesToPeer, PacketsToPeer: what the client sent
	received usage.Record // BytesToClient, PacketsToClient: what came back
}

func newClient(t *testing.T, server string) *client {
	t.Helper()
	conn := turntest.ListenUDP(t)
	c := turntest.Client(t, conn, server, turn.ClientConfig{
		Username: testUser, Password: testPass, Realm: testRealm, LoggerFactory: silentPion(),
	})
	rc, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	return &client{t: t, conn: conn, relay: rc, peer: turntest.EchoPeer(t).LocalAddr()}
}

// traffic sends n messages of different sizes to the echo peer through
// the relay, waiting for each echo (sending again after a timeout), and
// counts every datagram sent and received, as a billing check would.
func (c *client) traffic(n int) {
	c.t.Helper()
	buf := make([]byte, 2048)
	for i := range n {
		msg := []byte(fmt.Sprintf("%d %s", i, strings.Repeat("u", (i*37)%900)))
		for try := 0; ; try++ {
			if try == 5 {
				c.t.Fatalf("message %d never came back through the relay", i)
			}
			if _, err := c.relay.WriteTo(msg, c.peer); err != nil {
				c.t.Fatalf("write: %v", err)
			}
			c.sent.PacketsToPeer++
			c.sent.BytesToPeer += uint64(len(msg))
			_ = c.relay.SetReadDeadline(time.Now().Add(time.Second))
			k, _, err := c.relay.ReadFrom(buf)
			if err != nil {
				continue
			}
			c.received.PacketsToClient++
			c.received.BytesToClient += uint64(k)
			if string(buf[:k]) == string(msg) {
				break
			}
		}
	}
	// Late echoes of messages sent twice.
	for {
		_ = c.relay.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		k, _, err := c.relay.ReadFrom(buf)
		if err != nil {
			break
		}
		c.received.PacketsToClient++
		c.received.BytesToClient += uint64(k)
	}
}

// session is the session of the client's allocation among totals: the one
// whose client address is the client's socket.
func (c *client) session(t *Totals) *usage.Record {
	for _, s := range t.Sessions {
		if s.Client == c.conn.LocalAddr().String() {
			return s
		}
	}
	return nil
}

// Totals wraps usage.Totals with the records seen, for the checks.
type Totals struct {
	*usage.Totals
	records []usage.Record
}

func (t *Totals) add(r usage.Record) {
	t.records = append(t.records, r)
	t.Add(r)
}

// check fails unless the client's session is final with reason and its
// records add up to what the client counted, with at least minInterim
// interim records.
func (c *client) check(t *Totals, reason string, minInterim int) {
	c.t.Helper()
	s := c.session(t)
	if s == nil {
		c.t.Fatalf("no records of the client %v", c.conn.LocalAddr())
	}
	if s.Type != usage.TypeFinal || s.Reason != reason {
		c.t.Errorf("session %s: type %q reason %q, want final %q", s.Session, s.Type, s.Reason, reason)
	}
	got := [4]uint64{s.BytesToPeer, s.PacketsToPeer, s.BytesToClient, s.PacketsToClient}
	want := [4]uint64{c.sent.BytesToPeer, c.sent.PacketsToPeer, c.received.BytesToClient, c.received.PacketsToClient}
	if got != want {
		c.t.Errorf("session %s adds up to bytes/packets to peer %d/%d, to client %d/%d; the client counted %d/%d, %d/%d",
			s.Session, got[0], got[1], got[2], got[3], want[0], want[1], want[2], want[3])
	}
	interim, seqs := 0, map[uint32]bool{}
	for _, r := range t.records {
		if r.Session != s.Session {
			continue
		}
		seqs[r.Seq] = true
		if r.Type == usage.TypeInterim {
			interim++
		}
		if r.Node != testNode || r.Realm != testRealm || r.User != testUser || r.Transport != "udp" || len(r.Relayed) != 1 ||
			r.Start.IsZero() || r.End.Before(r.PeriodStart) || r.PeriodStart.Before(r.Start) || r.ID != fmt.Sprintf("%s:%d", r.Session, r.Seq) {
			c.t.Errorf("record %+v: fields wrong", r)
		}
	}
	for i := range len(seqs) {
		if !seqs[uint32(i)] {
			c.t.Errorf("session %s: records %v, a gap at %d", s.Session, seqs, i)
		}
	}
	if interim < minInterim {
		c.t.Errorf("session %s: %d interim records, want at least %d", s.Session, interim, minInterim)
	}
}

// exercise runs the three endings through r: a Refresh 0 and an expiry
// with interim records, and one allocation left for shutdown; read
// returns the records written so far.
func exercise(t *testing.T, r *testRelay, w *usage.Writer, read func() *Totals) {
	refreshed, expired, shut := newClient(t, r.addr), newClient(t, r.addr), newClient(t, r.addr)
	for range 3 {
		refreshed.traffic(20)
		expired.traffic(10)
		shut.traffic(5)
		time.Sleep(2 * interval)
	}
	// pion's Close of the relayed conn sends a Refresh with lifetime 0.
	if err := refreshed.relay.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing the client's socket stops its refreshes: the allocation
	// expires on the server.
	_ = expired.conn.Close()
	waitFor(t, "the Refresh 0 and the expiry to be recorded", 10*time.Second, func() bool {
		tot := read()
		a, b := refreshed.session(tot), expired.session(tot)
		return a != nil && a.Type == usage.TypeFinal && b != nil && b.Type == usage.TypeFinal
	})
	r.stop()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	tot := read()
	refreshed.check(tot, relay.UsageRefreshed, 2)
	expired.check(tot, relay.UsageExpired, 2)
	shut.check(tot, relay.UsageShutdown, 2)
	if c := w.UsageCounts(); c.Dropped != 0 || c.Written != uint64(len(tot.records)) {
		t.Errorf("counts %+v, want %d written, none dropped", c, len(tot.records))
	}
}

// TestFileRecordsAddUp: the JSONL file's records of allocations ended by
// a Refresh 0, by expiry and by shutdown, interim records included, add up
// exactly to what the pion client relayed each way.
func TestFileRecordsAddUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	w, err := usage.New(usage.Config{Node: testNode, File: path, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, w)
	exercise(t, r, w, func() *Totals { return readFile(t, path) })
}

// readFile adds up the records of the JSONL file at path.
func readFile(t *testing.T, path string) *Totals {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tot := &Totals{Totals: usage.NewTotals()}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r usage.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		tot.add(r)
	}
	return tot
}

// TestStreamRecordsAddUp: the same through the Redis stream, read by the
// example consumer (XREADGROUP, XACK), which leaves nothing pending.
func TestStreamRecordsAddUp(t *testing.T) {
	srv := redistest.Start(t)
	w, err := usage.New(usage.Config{Node: testNode, Redis: srv.URL(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, w)
	rc := redisClient(t, srv)
	tot := &Totals{Totals: usage.NewTotals()}
	exercise(t, r, w, func() *Totals { return consume(t, rc, tot) })
	pending, err := rc.XPending(context.Background(), usage.DefaultStream, "billing").Result()
	if err != nil || pending.Count != 0 {
		t.Errorf("XPENDING: %+v, %v; want nothing pending", pending, err)
	}
}

func redisClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// consume reads what the stream holds with a usage.Consumer into tot.
func consume(t *testing.T, rc *redis.Client, tot *Totals) *Totals {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c := &usage.Consumer{Client: rc, Stream: usage.DefaultStream, Group: "billing", Name: "test", Block: 100 * time.Millisecond}
	if err := c.Run(ctx, func(r usage.Record) error { tot.add(r); return nil }); err != nil {
		t.Fatal(err)
	}
	return tot
}

// TestRedisOutage: Redis killed while allocations relay and end: the relay
// keeps relaying, the writer counts failed writes and, once Redis is back,
// writes the records it kept, which add up.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	w, err := usage.New(usage.Config{Node: testNode, Redis: srv.URL(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	r := startRelay(t, w)
	rc := redisClient(t, srv)

	before := newClient(t, r.addr)
	before.traffic(10)
	_ = before.relay.Close()
	waitFor(t, "the first allocation's record in the stream", 5*time.Second, func() bool {
		n, _ := rc.XLen(context.Background(), usage.DefaultStream).Result()
		return n > 0
	})

	srv.Kill()
	during := newClient(t, r.addr)
	for range 3 {
		during.traffic(10) // fails the test if the relay stopped relaying
		time.Sleep(2 * interval)
	}
	_ = during.relay.Close()
	waitFor(t, "failed writes to be counted", 5*time.Second, func() bool { return w.UsageCounts().WriteErrors > 0 })

	srv.Restart() // empty: what was in the stream before is gone
	tot := &Totals{Totals: usage.NewTotals()}
	waitFor(t, "the records kept during the outage in the stream", 15*time.Second, func() bool {
		s := during.session(consume(t, rc, tot))
		return s != nil && s.Type == usage.TypeFinal
	})
	during.check(tot, relay.UsageRefreshed, 2)
	if c := w.UsageCounts(); c.Dropped != 0 {
		t.Errorf("counts %+v: records dropped with a queue of %d", c, usage.DefaultQueueSize)
	}
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
