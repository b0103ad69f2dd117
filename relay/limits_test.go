package relay_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// newRawStreamClient is a rawClient over a plain TCP connection, or TLS.
func newRawStreamClient(t *testing.T, kind relay.ListenerKind, server string) *rawClient {
	t.Helper()
	if kind == relay.TLS {
		return newRawTLSClient(t, server)
	}
	c, err := net.Dial("tcp", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, conn: c, user: testUser, pass: testPassword}
}

// newRawClientFrom is a UDP rawClient sending from the loopback address ip.
func newRawClientFrom(t *testing.T, ip, server string) *rawClient {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)}, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, conn: c, user: testUser, pass: testPassword}
}

// try sends req once and returns the answer, or nil when none comes
// within wait.
func (c *rawClient) try(req *stun.Message, wait time.Duration) *stun.Message {
	c.t.Helper()
	if _, err := c.conn.Write(req.Raw); err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(wait)
	for {
		_ = c.conn.SetReadDeadline(deadline)
		n, err := c.conn.Read(buf)
		if err != nil {
			return nil
		}
		resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if resp.Decode() == nil && resp.TransactionID == req.TransactionID {
			return resp
		}
	}
}

// unauthAllocate is the request every client starts with: no credentials.
func unauthAllocate() *stun.Message {
	return stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		proto.RequestedTransport(proto.ProtoUDP))
}

// lifetimeOf returns the LIFETIME of m in seconds, or -1.
func lifetimeOf(m *stun.Message) int {
	var lt proto.Lifetime
	if err := lt.GetFrom(m); err != nil {
		return -1
	}
	return int(time.Duration(lt) / time.Second)
}

// TestStreamRefreshZeroThenAllocateAgain is issue 11 defect 1: over TCP and
// TLS, a Refresh with LIFETIME 0 gets its success response (RFC 8656
// §7.3), the connection stays open, and a new Allocate on it succeeds. A
// kick still closes the connection.
func TestStreamRefreshZeroThenAllocateAgain(t *testing.T) {
	s := startServer(t)
	for _, kind := range []relay.ListenerKind{relay.TCP, relay.TLS} {
		t.Run(kind.String(), func(t *testing.T) {
			c := newRawStreamClient(t, kind, s.addrs[kind])
			c.allocate()
			resp := c.authed(stun.MethodRefresh, proto.Lifetime(0))
			wantCode(t, "Refresh(0)", resp, 0)
			if lt := lifetimeOf(resp); lt != 0 {
				t.Errorf("Refresh(0) answered LIFETIME %d, want 0", lt)
			}
			turntest.WaitFor(t, "the allocation deleted", func() bool { return s.Table().Len() == 0 })
			c.allocate() // same connection
			if n := s.Table().Len(); n != 1 {
				t.Fatalf("table has %d allocations after the second Allocate, want 1", n)
			}
			sessions := s.Sessions(testUser)
			if len(sessions) != 1 || !s.Kick(sessions[0].ID) {
				t.Fatalf("kick failed: %+v", sessions)
			}
			if !closedWithin(c.conn, 2*time.Second) {
				t.Error("a kicked allocation's connection stayed open")
			}
		})
	}
}

// TestStreamIdleAndExpiryAfterRefresh: the connection left open by a
// deleting Refresh is closed by the idle timeout; an allocation that
// expires takes its connection with it.
func TestStreamIdleAndExpiryAfterRefresh(t *testing.T) {
	s := startServer(t, func(c *relay.Config) {
		c.IdleTimeout = 300 * time.Millisecond
		c.DefaultLifetime, c.MaxLifetime = time.Second, time.Second
	})
	c := newRawStreamClient(t, relay.TCP, s.addrs[relay.TCP])
	c.allocate()
	time.Sleep(500 * time.Millisecond) // past the idle timeout: allocated, so it does not apply
	wantCode(t, "Refresh(0)", c.authed(stun.MethodRefresh, proto.Lifetime(0)), 0)
	if !closedWithin(c.conn, 2*time.Second) {
		t.Error("the connection stayed open past the idle timeout after its allocation was deleted")
	}

	c = newRawStreamClient(t, relay.TCP, s.addrs[relay.TCP])
	c.allocate()
	if !closedWithin(c.conn, 4*time.Second) { // 1 s lifetime, swept each second
		t.Error("an expired allocation's connection stayed open")
	}
}

// TestUnauthLimitSparesStreams is issue 11 defect 2: TCP and TLS clients
// never retransmit, so their unauthenticated answers are never dropped,
// however small the limit; UDP stays limited.
func TestUnauthLimitSparesStreams(t *testing.T) {
	s := startServer(t, withRateLimit(0.01, 1))
	for _, kind := range []relay.ListenerKind{relay.TCP, relay.TLS} {
		c := newRawStreamClient(t, kind, s.addrs[kind])
		for i := range 20 {
			if resp := c.try(unauthAllocate(), 2*time.Second); resp == nil {
				t.Fatalf("%s: unauthenticated request %d got no answer", kind, i+1)
			} else {
				wantCode(t, kind.String(), resp, stun.CodeUnauthorized)
			}
		}
	}
	u := newRawClientFrom(t, "127.0.0.1", s.addrs[relay.UDP])
	answered := 0
	for range 5 {
		if u.try(unauthAllocate(), 200*time.Millisecond) != nil {
			answered++
		}
	}
	if answered != 1 {
		t.Errorf("UDP: %d of 5 unauthenticated requests answered with burst 1, want 1", answered)
	}
}

// TestUnauthLimitPerSource is issue 12 finding 3 through the network: 300
// sources drain their budgets; 200 never-seen ones are each answered. (With
// the old 1024 hashed buckets, about a quarter of them found theirs
// drained.)
func TestUnauthLimitPerSource(t *testing.T) {
	s := startServer(t, withRateLimit(0.001, 2))
	server := s.addrs[relay.UDP]
	for i := range 300 {
		c := newRawClientFrom(t, fmt.Sprintf("127.3.%d.%d", i/200, i%200+1), server)
		for range 4 {
			if _, err := c.conn.Write(unauthAllocate().Raw); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.conn.Close()
	}
	time.Sleep(200 * time.Millisecond) // let the server take them all
	starved := 0
	for i := range 200 {
		c := newRawClientFrom(t, fmt.Sprintf("127.4.%d.%d", i/200, i%200+1), server)
		if c.try(unauthAllocate(), time.Second) == nil {
			starved++
		}
		_ = c.conn.Close()
	}
	if starved > 0 {
		t.Errorf("%d of 200 never-seen clients got no challenge after 300 others drained their budgets", starved)
	}
}

// TestStaleGenuineNonceBypassesLimit is issue 12 finding 3's last part: a
// client whose nonce aged gets its 438 even when its address's budget is
// spent, because its MESSAGE-INTEGRITY verifies against the nonce this
// server issued it; a wrong key, or a nonce we never issued, stays limited.
func TestStaleGenuineNonceBypassesLimit(t *testing.T) {
	s := startServer(t, withAuth(newAuth(t, time.Second)), withRateLimit(0.001, 1))
	c := newRawClientFrom(t, "127.0.0.1", s.addrs[relay.UDP])
	c.allocate() // its 401 spends the budget of 1
	if c.try(unauthAllocate(), 300*time.Millisecond) != nil {
		t.Fatal("the budget is not spent: the test proves nothing")
	}
	time.Sleep(2100 * time.Millisecond) // nonce lifetime is whole seconds

	refresh := func(pass string, nonce stun.Nonce) *stun.Message {
		return stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
			stun.NewUsername(testUser), stun.NewRealm(testRealm), nonce,
			stun.NewLongTermIntegrity(testUser, testRealm, pass), stun.Fingerprint)
	}
	if resp := c.try(refresh("wrong", c.nonce), time.Second); resp != nil {
		t.Errorf("a stale nonce with a wrong key was answered (%v) over a spent budget", resp)
	}
	forged := stun.NewNonce(strings.Repeat("A", 32))
	if resp := c.try(refresh(testPassword, forged), time.Second); resp != nil {
		t.Errorf("a forged nonce was answered (%v) over a spent budget", resp)
	}
	resp := c.try(refresh(testPassword, c.nonce), time.Second)
	if resp == nil {
		t.Fatal("a Refresh with a genuine stale nonce got no 438: the limiter dropped it")
	}
	wantCode(t, "stale genuine nonce", resp, stun.CodeStaleNonce)
	if err := c.nonce.GetFrom(resp); err != nil {
		t.Fatal("438 without a fresh NONCE")
	}
	wantCode(t, "Refresh with the fresh nonce", c.authed(stun.MethodRefresh), 0)
}

// TestBindingLimit is issue 12 finding 6: a flood of Bindings from one
// address gets at most its burst plus the refill, while ICE-like rates
// (many clients behind one address) are all answered, and answers carry no
// SOFTWARE.
func TestBindingLimit(t *testing.T) {
	const rate, burst = 200, 100
	s := startServer(t, func(c *relay.Config) { c.BindingRate, c.BindingBurst = rate, burst })
	server := s.addrs[relay.UDP]

	// ICE-like: 40 pairs behind one address, one check each every 250 ms
	// (160/s, under the rate), for a second.
	c := newRawClientFrom(t, "127.0.0.5", server)
	software := false
	for range 4 {
		for range 40 {
			resp := c.try(stun.MustBuild(stun.TransactionID, stun.BindingRequest), time.Second)
			if resp == nil {
				t.Fatal("a Binding at an ICE-like rate got no answer")
			}
			if resp.Contains(stun.AttrSoftware) {
				software = true
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	if software {
		t.Error("Binding answers carry SOFTWARE")
	}

	// Flood: 2000 Bindings as fast as possible from another address.
	f := newRawClientFrom(t, "127.0.0.6", server)
	got := make(chan int)
	go func() {
		n := 0
		buf := make([]byte, 1500)
		for {
			_ = f.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := f.conn.Read(buf); err != nil {
				got <- n
				return
			}
			n++
		}
	}()
	start := time.Now()
	for range 2000 {
		if _, err := f.conn.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Since(start)
	answers := <-got
	bound := burst + int(rate*(sent+500*time.Millisecond).Seconds()) + 1
	t.Logf("2000 Bindings sent in %v: %d answered, bound %d", sent, answers, bound)
	if answers > bound {
		t.Errorf("flood of 2000 Bindings got %d answers, bound %d", answers, bound)
	}
	if answers < burst/2 {
		t.Errorf("flood got only %d answers, want about the burst %d", answers, burst)
	}
}

// TestAuthFailureLogBounded is issue 12 finding 5: 500 requests with a
// wrong key and a 500-byte USERNAME log a bounded number of lines, each of
// bounded length, and a later line says how many were suppressed.
func TestAuthFailureLogBounded(t *testing.T) {
	var logs turntest.SyncBuffer
	s := startServer(t, withLogs(&logs))
	c := newRawStreamClient(t, relay.TCP, s.addrs[relay.TCP])
	c.user, c.pass = strings.Repeat("u", 500), "wrong"
	start := time.Now()
	for range 500 {
		c.nonce = nil // fetch a nonce each time: a 401 is what a failed check gets
		wantCode(t, "bad key", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), stun.CodeUnauthorized)
	}
	elapsed := time.Since(start)
	lines := authFailedLines(logs.String())
	bound := 10 + int(elapsed.Seconds()) + 1 // burst 10, then 1 a second
	t.Logf("500 failures in %v: %d lines logged, bound %d", elapsed, len(lines), bound)
	if len(lines) > bound {
		t.Errorf("500 failed checks logged %d lines, bound %d", len(lines), bound)
	}
	for _, l := range lines {
		if len(l) > 512 {
			t.Errorf("a %d-byte line, bound 512: %s", len(l), l)
			break
		}
		if !strings.Contains(l, "user=") || strings.Contains(l, strings.Repeat("u", 65)) {
			t.Errorf("the user name is missing or not cut to 64 bytes: %s", l)
			break
		}
	}
	time.Sleep(1100 * time.Millisecond) // a token again
	c.nonce = nil
	c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP))
	last := authFailedLines(logs.String())
	if n := len(last); n == len(lines) || !strings.Contains(last[n-1], "suppressed=") {
		t.Errorf("the line after the flood does not report the suppressed ones: %q", last[len(last)-1])
	}
}

func authFailedLines(out string) []string {
	var lines []string
	for l := range strings.Lines(out) {
		if strings.Contains(l, "authentication failed") {
			lines = append(lines, strings.TrimSuffix(l, "\n"))
		}
	}
	return lines
}

// withLogs sends the server's info-level logs to w.
func withLogs(w io.Writer) serverOption {
	return func(c *relay.Config) { c.Logger = slog.New(slog.NewTextHandler(w, nil)) }
}
