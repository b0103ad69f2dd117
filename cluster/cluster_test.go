package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/redis/go-redis/v9"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/cluster"
	"github.com/postern/postern/internal/redistest"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

const (
	testRealm    = "postern.test"
	testUser     = "alice"
	testPassword = "wonderland"
	heartbeat    = 200 * time.Millisecond
)

// node is one in-process Postern node of a test fleet: a relay on
// 127.0.0.1 (UDP) with its cluster.Node.
type node struct {
	*relay.Server
	fleet *cluster.Node
	addr  string // the UDP listener, HOST:PORT
	log   *turntest.SyncBuffer
}

type nodeOption func(*cluster.Config, *relay.Config)

func withUserQuota(n int) nodeOption {
	return func(c *cluster.Config, r *relay.Config) { c.UserQuota, r.UserQuota = n, n }
}

func withRegion(region string) nodeOption {
	return func(c *cluster.Config, _ *relay.Config) { c.Region = region }
}

// noFleet gives the node its own random nonce key and no relay.Fleet:
// a node alone, as before clustering.
func noFleet() nodeOption { return func(c *cluster.Config, _ *relay.Config) { c.URL = "" } }

// startNode starts a node of the fleet on redisURL, named name.
func startNode(t *testing.T, redisURL, name string, opts ...nodeOption) *node {
	t.Helper()
	logs := &turntest.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	cc := cluster.Config{URL: redisURL, Node: name, Heartbeat: heartbeat, Logger: log, Version: "test"}
	rc := relay.Config{
		Listeners:         []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:0"}},
		ListenersExplicit: true,
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		RelayPorts:        allocations.PortRange{Low: 32768, High: 65535},
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cc, &rc)
	}
	var key []byte
	var n *cluster.Node
	if cc.URL != "" {
		var err error
		if n, err = cluster.New(cc); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		if key, err = n.NonceKey(context.Background()); err != nil {
			t.Fatal(err)
		}
		rc.Fleet = n
	}
	a, err := auth.New(auth.Config{Realm: testRealm, Users: map[string]string{testUser: testPassword, "bob": "builder"}, NonceKey: key})
	if err != nil {
		t.Fatal(err)
	}
	rc.Auth = a
	srv, err := relay.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	turntest.Start(t, srv)
	nd := &node{Server: srv, fleet: n, addr: srv.Addrs()[0].Addr.String(), log: logs}
	if n != nil {
		n.Attach(srv, []string{"stun:" + nd.addr, "turn:" + nd.addr + "?transport=udp"}, "")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { n.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		if err := n.Beat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return nd
}

// beat runs a heartbeat on every node, so that each reads the others'
// fresh entries.
func beat(t *testing.T, nodes ...*node) {
	t.Helper()
	for range 2 {
		for _, n := range nodes {
			if err := n.fleet.Beat(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func client(t *testing.T, addr string) *turn.Client {
	t.Helper()
	return turntest.Client(t, turntest.ListenUDP(t), addr, turn.ClientConfig{Username: testUser, Password: testPassword, Realm: testRealm})
}

// roundTrip sends count messages through relayConn to an echo peer and
// checks each comes back.
func roundTrip(t *testing.T, relayConn net.PacketConn, peer net.Addr, count int) {
	t.Helper()
	buf := make([]byte, 1500)
	for i := range count {
		want := []byte(fmt.Sprintf("message %d", i))
		got := false
		for try := 0; try < 5 && !got; try++ {
			if _, err := relayConn.WriteTo(want, peer); err != nil {
				t.Fatal(err)
			}
			_ = relayConn.SetReadDeadline(time.Now().Add(time.Second))
			for {
				n, _, err := relayConn.ReadFrom(buf)
				if err != nil {
					break
				}
				if bytes.Equal(buf[:n], want) {
					got = true
					break
				}
			}
		}
		if !got {
			t.Fatalf("message %d never came back through the relay", i)
		}
	}
}

// raw is a hand-built STUN client over UDP, for what pion's client hides
// (the nonce, ALTERNATE-SERVER).
type raw struct {
	t    *testing.T
	conn *net.UDPConn
}

func newRaw(t *testing.T) *raw { return &raw{t: t, conn: turntest.ListenUDP(t)} }

func (c *raw) exchange(to string, req *stun.Message) *stun.Message {
	c.t.Helper()
	dst, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for try := 0; try < 5; try++ {
		if _, err := c.conn.WriteTo(req.Raw, dst); err != nil {
			c.t.Fatal(err)
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.conn.Read(buf)
		if err != nil {
			continue
		}
		resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := resp.Decode(); err != nil {
			c.t.Fatal(err)
		}
		if resp.TransactionID == req.TransactionID {
			return resp
		}
	}
	c.t.Fatal("no response")
	return nil
}

// nonce sends an unauthenticated Allocate to addr and returns the nonce of
// its 401.
func (c *raw) nonce(addr string) stun.Nonce {
	c.t.Helper()
	resp := c.exchange(addr, stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		proto.RequestedTransport(proto.ProtoUDP), stun.Fingerprint))
	var nonce stun.Nonce
	if code(c.t, resp) != stun.CodeUnauthorized || nonce.GetFrom(resp) != nil {
		c.t.Fatalf("unauthenticated Allocate: want 401 with a nonce, got %v", resp)
	}
	return nonce
}

// allocate sends an authenticated Allocate with nonce to addr.
func (c *raw) allocate(addr string, nonce stun.Nonce) *stun.Message {
	c.t.Helper()
	return c.exchange(addr, stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		proto.RequestedTransport(proto.ProtoUDP), stun.NewUsername(testUser), stun.NewRealm(testRealm), nonce,
		stun.NewLongTermIntegrity(testUser, testRealm, testPassword), stun.Fingerprint))
}

func code(t *testing.T, m *stun.Message) stun.ErrorCode {
	t.Helper()
	if m.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		t.Fatalf("error response without ERROR-CODE: %v", err)
	}
	return ec.Code
}

// TestNonceFromOneNodeValidOnAnother: the fleet shares its nonce key, so
// a nonce from node A authenticates an Allocate on node B; a node with a
// key of its own answers it 438 (the behaviour before clustering).
func TestNonceFromOneNodeValidOnAnother(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a")
	b := startNode(t, r.URL(), "b")
	alone := startNode(t, r.URL(), "alone", noFleet())

	c := newRaw(t)
	nonce := c.nonce(a.addr)
	if got := code(t, c.allocate(b.addr, nonce)); got != 0 {
		t.Fatalf("Allocate on node b with node a's nonce: code %d, want success", got)
	}
	if got := code(t, newRaw(t).allocate(alone.addr, newRaw(t).nonce(a.addr))); got != stun.CodeStaleNonce {
		t.Fatalf("Allocate on a node with its own key, nonce of a: code %d, want 438", got)
	}
}

// TestUserQuotaAcrossNodes: with user_quota 1, a user holding an
// allocation on node A gets 486 on node B, and may allocate on B once the
// allocation on A is gone.
func TestUserQuotaAcrossNodes(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a", withUserQuota(1))
	b := startNode(t, r.URL(), "b", withUserQuota(1))

	ca := client(t, a.addr)
	relayA, err := ca.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	cb := client(t, b.addr)
	if _, err := cb.Allocate(); err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("second allocation of the user, on node b: %v, want 486", err)
	}
	if n, err := a.fleet.FleetCount(context.Background(), testUser); err != nil || n != 1 {
		t.Fatalf("fleet count %d (%v), want 1", n, err)
	}
	_ = relayA.Close() // Refresh with lifetime 0: the allocation ends
	turntest.WaitFor(t, "the count to be released", func() bool {
		n, err := a.fleet.FleetCount(context.Background(), testUser)
		return err == nil && n == 0
	})
	if _, err := client(t, b.addr).Allocate(); err != nil {
		t.Fatalf("allocation on node b after the one on a ended: %v", err)
	}
}

// TestPickNeverDrainingPrefersLessLoaded: the credentials API's choice
// skips a draining node and prefers the node with fewer allocations, and
// the region asked for; ALTERNATE-SERVER on a draining node names the best
// other node.
func TestPickNeverDrainingPrefersLessLoaded(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a", withRegion("eu"))
	b := startNode(t, r.URL(), "b", withRegion("eu"))
	c := startNode(t, r.URL(), "c", withRegion("us"))
	// a carries two allocations, b none, c none but draining.
	for range 2 {
		if _, err := client(t, a.addr).Allocate(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.fleet.Do(context.Background(), cluster.Op{Op: cluster.OpDrain, Node: "c"}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	beat(t, a, b, c)
	names := func(infos []cluster.Info) string {
		var s []string
		for _, i := range infos {
			s = append(s, i.Node)
		}
		return strings.Join(s, ",")
	}
	for _, from := range []*node{a, b, c} {
		if got := names(from.fleet.Pick("", netip.Addr{}, 3)); got != "b,a" {
			t.Errorf("Pick on %s: %s, want b,a (c drains)", from.fleet.Name(), got)
		}
		if got := names(from.fleet.Pick("us", netip.Addr{}, 1)); got != "b" {
			t.Errorf("Pick for region us on %s: %s, want b (the only us node drains)", from.fleet.Name(), got)
		}
	}
	// b drains too: a client allocating on b is sent to a.
	b.SetDraining(true)
	beat(t, a, b, c)
	cl := newRaw(t)
	resp := cl.allocate(b.addr, cl.nonce(b.addr))
	if got := code(t, resp); got != stun.CodeTryAlternate {
		t.Fatalf("Allocate on draining b: code %d, want 300", got)
	}
	var alt stun.AlternateServer
	if err := alt.GetFrom(resp); err != nil || (&net.UDPAddr{IP: alt.IP, Port: alt.Port}).String() != a.addr {
		t.Fatalf("ALTERNATE-SERVER %v (%v), want node a at %s", alt, err, a.addr)
	}
}

// TestKickFromAnotherNode: a kick sent from node C ends an allocation on
// node A; sessions from C list the whole fleet's.
func TestKickFromAnotherNode(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a")
	_ = startNode(t, r.URL(), "b")
	c := startNode(t, r.URL(), "c")
	if _, err := client(t, a.addr).Allocate(); err != nil {
		t.Fatal(err)
	}
	res, err := c.fleet.Do(context.Background(), cluster.Op{Op: cluster.OpSessions}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var id uint64
	count := 0
	for _, r := range res {
		for _, s := range r.Sessions {
			if r.Node != "a" {
				t.Errorf("session on node %s, want only on a", r.Node)
			}
			id = s.ID
			count++
		}
	}
	if len(res) != 3 || count != 1 {
		t.Fatalf("fleet sessions: %d nodes answered, %d sessions; want 3 and 1", len(res), count)
	}
	res, err = c.fleet.Do(context.Background(), cluster.Op{Op: cluster.OpKick, Node: "a", ID: id}, 2*time.Second)
	if err != nil || len(res) != 1 || res[0].Kicked != 1 {
		t.Fatalf("kick from c: %+v, %v; want node a to kick 1", res, err)
	}
	if n := a.Allocations(); n != 0 {
		t.Fatalf("node a holds %d allocations after the kick, want 0", n)
	}
}

// TestRedisOutage: Redis killed mid-test: media keeps flowing, and
// allocations keep working on every node without waiting for Redis; when
// Redis returns (empty), the heartbeats re-sync the registry, the nonce
// key and the quota counts.
func TestRedisOutage(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a", withUserQuota(10))
	b := startNode(t, r.URL(), "b", withUserQuota(10))
	peer := turntest.EchoPeer(t)
	ca := client(t, a.addr)
	relayA, err := ca.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, relayA, peer.LocalAddr(), 3)

	r.Kill()
	roundTrip(t, relayA, peer.LocalAddr(), 20)
	for _, n := range []*node{a, b} {
		start := time.Now()
		relayed, err := client(t, n.addr).Allocate()
		if err != nil {
			t.Fatalf("allocation on %s with Redis down: %v", n.fleet.Name(), err)
		}
		roundTrip(t, relayed, peer.LocalAddr(), 3)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("allocation and round trip on %s with Redis down took %v", n.fleet.Name(), d)
		}
	}
	turntest.WaitFor(t, "both nodes to notice the outage", func() bool { return a.fleet.Degraded() && b.fleet.Degraded() })
	if a.fleet.Fallbacks() == 0 {
		t.Error("no fallback counted")
	}
	if !strings.Contains(a.log.String(), "Redis unreachable") {
		t.Error("no log line about the outage")
	}

	r.Restart()
	beat(t, a, b)
	if a.fleet.Degraded() || b.fleet.Degraded() {
		t.Fatal("still degraded after Redis returned")
	}
	if n, err := a.fleet.FleetCount(context.Background(), testUser); err != nil || n != 3 {
		t.Fatalf("fleet count after re-sync %d (%v), want the 3 live allocations", n, err)
	}
	if got := len(b.fleet.Nodes()); got != 2 {
		t.Fatalf("registry after re-sync lists %d nodes, want 2", got)
	}
	// The nonce key is back: a nonce from a works on b.
	c := newRaw(t)
	if got := code(t, c.allocate(b.addr, c.nonce(a.addr))); got != 0 {
		t.Fatalf("Allocate on b with a's nonce after Redis returned: code %d", got)
	}
	roundTrip(t, relayA, peer.LocalAddr(), 3)
}

// TestSecretsFromRedis: the fleet's secrets are read every heartbeat,
// reported when they change, and a rotation (a new secret pushed first)
// shows without a restart.
func TestSecretsFromRedis(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a")
	got := make(chan []string, 4)
	a.fleet.OnSecrets(func(s []string) { got <- s })
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	for _, step := range []struct{ push, want string }{{"old", "old"}, {"new", "new,old"}} {
		if err := rdb.LPush(ctx, "postern:secrets", step.push).Err(); err != nil {
			t.Fatal(err)
		}
		if err := a.fleet.Beat(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if strings.Join(s, ",") != step.want {
				t.Fatalf("secrets %v, want %s", s, step.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no secrets change reported")
		}
	}
	if s := a.fleet.Secrets(); strings.Join(s, ",") != "new,old" {
		t.Fatalf("Secrets() = %v", s)
	}
}

func withTotalQuota(n int) nodeOption {
	return func(_ *cluster.Config, r *relay.Config) { r.TotalQuota = n }
}

func withRules(rules string) nodeOption {
	return func(c *cluster.Config, _ *relay.Config) {
		var err error
		if c.RegionRules, err = cluster.ParseRegionRules(rules); err != nil {
			panic(err)
		}
	}
}

// TestFullNodeSendsToAnother: a node at its total_quota answers an
// Allocate with 300 Try Alternate naming another node of the fleet (508
// without a fleet).
func TestFullNodeSendsToAnother(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a", withTotalQuota(1))
	b := startNode(t, r.URL(), "b")
	beat(t, a, b)
	if _, err := client(t, a.addr).Allocate(); err != nil {
		t.Fatal(err)
	}
	c := newRaw(t)
	resp := c.allocate(a.addr, c.nonce(a.addr))
	var alt stun.AlternateServer
	if got := code(t, resp); got != stun.CodeTryAlternate || alt.GetFrom(resp) != nil || (&net.UDPAddr{IP: alt.IP, Port: alt.Port}).String() != b.addr {
		t.Fatalf("Allocate on full node a: code %d, ALTERNATE-SERVER %v; want 300 naming b at %s", got, alt, b.addr)
	}
	alone := startNode(t, r.URL(), "alone", noFleet(), withTotalQuota(1))
	if _, err := client(t, alone.addr).Allocate(); err != nil {
		t.Fatal(err)
	}
	c = newRaw(t)
	if got := code(t, c.allocate(alone.addr, c.nonce(alone.addr))); got != stun.CodeInsufficientCapacity {
		t.Fatalf("Allocate on a full node alone: code %d, want 508", got)
	}
}

// TestRegionRules: a request naming no region is served by the nodes of
// the region its client address maps to, else by the least loaded.
func TestRegionRules(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a", withRegion("eu"), withRules("10.0.0.0/8=us, 10.9.0.0/16=eu"))
	b := startNode(t, r.URL(), "b", withRegion("us"))
	if _, err := client(t, b.addr).Allocate(); err != nil {
		t.Fatal(err)
	}
	beat(t, a, b)
	for _, tt := range []struct{ client, want string }{{"10.1.2.3", "b"}, {"10.9.1.1", "a"}, {"192.0.2.1", "a"}, {"::ffff:10.1.2.3", "b"}} {
		if got := a.fleet.Pick("", netip.MustParseAddr(tt.client), 1); len(got) != 1 || got[0].Node != tt.want {
			t.Errorf("Pick for %s: %v, want %s", tt.client, got, tt.want)
		}
	}
	if got := a.fleet.Pick("us", netip.MustParseAddr("10.9.1.1"), 1); got[0].Node != "b" {
		t.Errorf("a request's region wins over the rules: got %s", got[0].Node)
	}
}

// TestSlowRedis: a Redis that stops answering (CLIENT PAUSE) delays an
// Allocate by at most the timeout, once; later ones do not wait for it.
func TestSlowRedis(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a", withUserQuota(10))
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	if err := rdb.ClientPause(context.Background(), 3*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		start := time.Now()
		if _, err := client(t, a.addr).Allocate(); err != nil {
			t.Fatalf("allocation %d with Redis paused: %v", i, err)
		}
		// pion's Allocate is two exchanges (401, then the Allocate); the
		// node's own wait is at most cluster.DefaultTimeout.
		if d := time.Since(start); d > cluster.DefaultTimeout+400*time.Millisecond {
			t.Errorf("allocation %d with Redis paused took %v", i, d)
		}
	}
	if !a.fleet.Degraded() || a.fleet.Fallbacks() == 0 {
		t.Error("the paused Redis was not noticed")
	}
}

// BenchmarkAdmit is the cost an Allocate pays for the fleet-wide quota
// (one script call to a loopback Redis), and the release after it.
func BenchmarkAdmit(b *testing.B) {
	r := redistest.Start(b)
	n, err := cluster.New(cluster.Config{URL: r.URL(), Node: "bench", UserQuota: 1 << 30, IPQuota: 1 << 30,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	a := &allocations.Allocation{User: "u", FiveTuple: allocations.FiveTuple{
		Client: netip.MustParseAddrPort("192.0.2.1:5000"), Server: netip.MustParseAddrPort("192.0.2.2:3478")}}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		a.FiveTuple.Client = netip.AddrPortFrom(a.FiveTuple.Client.Addr(), uint16(i))
		if err := n.Admit(a); err != nil {
			b.Fatal(err)
		}
	}
	if n.Degraded() {
		b.Fatal("Redis unreachable during the benchmark")
	}
}

// TestLocalDrainPublishedAtOnce: a drain started on the node itself (as
// SIGUSR1 or the admin API do) reaches the registry well before the next
// heartbeat.
func TestLocalDrainPublishedAtOnce(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a", func(c *cluster.Config, _ *relay.Config) { c.Heartbeat = time.Minute })
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	time.Sleep(300 * time.Millisecond) // past Run's first heartbeat
	a.SetDraining(true)
	start := time.Now()
	turntest.WaitFor(t, "the drain in the registry", func() bool {
		return strings.Contains(rdb.Get(context.Background(), "postern:node:a").Val(), `"state":"draining"`)
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("the drain took %v to reach the registry", d)
	}
}
