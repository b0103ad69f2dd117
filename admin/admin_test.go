package admin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

const (
	testRealm = "postern.test"
	testToken = "s3cret-admin-token"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is a relay on loopback (UDP and TLS listeners) with an admin
// listener in front of it. The admin listener starts before the relay, as
// in postern serve, so the test can watch it become ready.
type fixture struct {
	relay      *relay.Server
	admin      *admin.Server
	base       string // http://127.0.0.1:PORT
	udp, tls   string // listener addresses
	stopRelay  context.CancelFunc
	relayStart func()
}

func newFixture(t *testing.T, token string) *fixture {
	t.Helper()
	a, err := auth.New(auth.Config{
		Realm:   testRealm,
		Users:   map[string]string{"alice": "wonderland", "bob": "builder"},
		Secrets: []string{"rest-secret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{
		Listeners: []relay.ListenSpec{
			{Kind: relay.UDP, Addr: "127.0.0.1:0"},
			{Kind: relay.TLS, Addr: "127.0.0.1:0"},
		},
		ListenersExplicit: true,
		Auth:              a,
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		RelayPorts:        mustPorts(t, "40000-40999"),
		Logger:            quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	adm, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Token: token, Relay: r, Version: "1.2.3-test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAdmin := context.WithCancel(context.Background())
	if err := adm.Start(actx); err != nil {
		t.Fatal(err)
	}
	rctx, stopRelay := context.WithCancel(context.Background())
	f := &fixture{relay: r, admin: adm, base: "http://" + adm.Addr().String(), stopRelay: stopRelay}
	f.relayStart = func() {
		if err := r.Start(rctx); err != nil {
			t.Fatal(err)
		}
		for _, b := range r.Addrs() {
			switch b.Kind {
			case relay.UDP:
				f.udp = b.Addr.String()
			case relay.TLS:
				f.tls = b.Addr.String()
			}
		}
	}
	t.Cleanup(func() {
		stopRelay()
		_ = r.Wait()
		stopAdmin()
		select {
		case <-adm.Done():
		case <-time.After(10 * time.Second):
			t.Error("admin listener did not stop within 10 s")
		}
	})
	return f
}

func mustPorts(t *testing.T, s string) allocations.PortRange {
	t.Helper()
	pr, err := allocations.ParsePortRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// get fetches path with the given bearer token ("" for none) and returns
// the status and body.
func (f *fixture) get(t *testing.T, method, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape returns every sample of /metrics keyed by its series, e.g.
// `postern_relayed_packets_total{direction="to_peer"}`.
func (f *fixture) scrape(t *testing.T) samples {
	t.Helper()
	code, body := f.get(t, http.MethodGet, "/metrics", testToken)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	out := samples{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

type samples map[string]float64

// want checks the value of one series, which must be exported.
func (s samples) want(t *testing.T, series string, want float64) {
	t.Helper()
	got, ok := s[series]
	switch {
	case !ok:
		t.Errorf("%s is not exported, want %v", series, want)
	case got != want:
		t.Errorf("%s = %v, want %v", series, got, want)
	}
}

// turnClient allocates through addr as user/password over UDP (or TLS).
func turnClient(t *testing.T, addr, user, password string, useTLS bool) (*turn.Client, net.PacketConn) {
	t.Helper()
	var conn net.PacketConn
	if useTLS {
		conn = turn.NewSTUNConn(turntest.DialTLS(t, addr))
	} else {
		conn = turntest.ListenUDP(t)
	}
	c := turntest.Client(t, conn, addr, turn.ClientConfig{Username: user, Password: password, Realm: testRealm})
	return c, conn
}

// echo sends msg through the relay to peer until it comes back (at most
// 5 tries) and returns how many times it was sent.
func echo(t *testing.T, rc net.PacketConn, peer net.Addr, msg []byte) int {
	t.Helper()
	buf := make([]byte, 2048)
	for try := 1; try <= 5; try++ {
		if _, err := rc.WriteTo(msg, peer); err != nil {
			t.Fatal(err)
		}
		_ = rc.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := rc.ReadFrom(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == string(msg) {
				return try
			}
		}
	}
	t.Fatalf("%q never came back through the relay", msg)
	return 0
}

// TestMetricsFollowARealClient scrapes /metrics before and after a pion
// TURN client allocates and relays, and checks the numbers.
func TestMetricsFollowARealClient(t *testing.T) {
	f := newFixture(t, testToken)
	f.relayStart()
	udpL, tlsL := `listener="udp://`+f.udp+`",transport="udp"`, `listener="tls://`+f.tls+`",transport="tls"`

	before := f.scrape(t)
	before.want(t, "postern_ready", 1)
	before.want(t, `postern_build_info{goversion="`+runtime.Version()+`",version="1.2.3-test"}`, 1)
	before.want(t, "postern_allocations_active{"+udpL+"}", 0)
	before.want(t, `postern_relayed_packets_total{direction="to_peer"}`, 0)
	before.want(t, `postern_auth_failures_total{reason="bad_integrity"}`, 0)
	before.want(t, "postern_relay_ports_capacity", 1000)
	for _, std := range []string{"go_goroutines", "process_open_fds"} {
		if _, ok := before[std]; !ok {
			t.Errorf("standard metric %s missing", std)
		}
	}

	// One UDP allocation relaying to an echo peer over a channel, one TLS
	// allocation, one wrong password.
	client, _ := turnClient(t, f.udp, "alice", "wonderland", false)
	rc, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	peer := turntest.EchoPeer(t)
	echo(t, rc, peer.LocalAddr(), []byte("warm-up"))
	turntest.WaitFor(t, "pion's channel binding", func() bool { return f.relay.Stats().Channels == 1 })
	tlsClient, _ := turnClient(t, f.tls, "bob", "builder", true)
	rcTLS, err := tlsClient.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rcTLS.Close()
	bad, _ := turnClient(t, f.udp, "alice", "not-her-password", false)
	if _, err := bad.Allocate(); err == nil {
		t.Fatal("allocate with a wrong password succeeded")
	}

	mid := f.scrape(t)
	mid.want(t, "postern_allocations_active{"+udpL+"}", 1)
	mid.want(t, "postern_allocations_total{"+udpL+"}", 1)
	mid.want(t, "postern_allocations_active{"+tlsL+"}", 1)
	mid.want(t, "postern_allocations_total{"+tlsL+"}", 1)
	mid.want(t, "postern_permissions_active", 1)
	mid.want(t, "postern_channels_active", 1)
	mid.want(t, `postern_auth_failures_total{reason="bad_integrity"}`, 1)
	mid.want(t, `postern_tls_handshakes_total{result="ok"}`, 1)
	mid.want(t, `postern_tls_handshakes_total{result="failed"}`, 0)
	mid.want(t, `postern_relay_ports_in_use{relay_ip="127.0.0.1"}`, 2)
	if mid[`postern_requests_total{method="Allocate"}`] < 4 {
		t.Errorf("Allocate requests = %v, want at least 4", mid[`postern_requests_total{method="Allocate"}`])
	}
	if mid[`postern_request_errors_total{code="401",method="Allocate"}`] < 3 {
		t.Errorf("Allocate 401s = %v, want at least 3", mid[`postern_request_errors_total{code="401",method="Allocate"}`])
	}

	// Exactly 10 packets of 100 bytes each way, over the channel.
	sent := 0
	for i := range 10 {
		sent += echo(t, rc, peer.LocalAddr(), fmt.Appendf(nil, "%-100d", i))
	}
	// The server counts a datagram just after sending it, so an echo can
	// come back before its count: scrape until the counts settle.
	var after samples
	deadline := time.Now().Add(5 * time.Second)
	for {
		after = f.scrape(t)
		p, c := `postern_relayed_packets_total{direction="to_peer"}`, `postern_relayed_packets_total{direction="to_client"}`
		if (after[p]-mid[p] >= float64(sent) && after[c]-mid[c] >= float64(sent)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, dir := range []string{"to_peer", "to_client"} {
		p := `postern_relayed_packets_total{direction="` + dir + `"}`
		b := `postern_relayed_bytes_total{direction="` + dir + `"}`
		if got := after[p] - mid[p]; got != float64(sent) {
			t.Errorf("%s grew by %v, want %d", p, got, sent)
		}
		if got := after[b] - mid[b]; got != float64(100*sent) {
			t.Errorf("%s grew by %v, want %d", b, got, 100*sent)
		}
	}
	for series, v := range after {
		if strings.HasPrefix(series, "postern_dropped_packets_total") && v != 0 {
			t.Errorf("%s = %v, want 0", series, v)
		}
	}

	// The allocation ends (Refresh with lifetime 0): active falls, ended
	// rises, and what it relayed stays counted.
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	turntest.WaitFor(t, "the allocation to end", func() bool { return len(f.relay.Sessions("alice")) == 0 })
	end := f.scrape(t)
	end.want(t, "postern_allocations_active{"+udpL+"}", 0)
	end.want(t, `postern_allocations_ended_total{listener="udp://`+f.udp+`",reason="deleted",transport="udp"}`, 1)
	end.want(t, "postern_allocations_total{"+udpL+"}", 1)
	end.want(t, `postern_relay_ports_in_use{relay_ip="127.0.0.1"}`, 1)
	for _, dir := range []string{"to_peer", "to_client"} {
		p := `postern_relayed_packets_total{direction="` + dir + `"}`
		if end[p] < after[p] {
			t.Errorf("%s went down from %v to %v after the allocation ended", p, after[p], end[p])
		}
	}
}

func TestHealthStates(t *testing.T) {
	f := newFixture(t, testToken)
	check := func(path string, wantCode int, wantBody string) {
		t.Helper()
		code, body := f.get(t, http.MethodGet, path, "") // no token: probes need none
		if code != wantCode || strings.TrimSpace(body) != wantBody {
			t.Errorf("%s = %d %q, want %d %q", path, code, body, wantCode, wantBody)
		}
	}
	// Admin is up, the relay has not bound its listeners yet.
	check("/healthz", 200, "ok")
	check("/readyz", 503, "starting")
	f.scrape(t).want(t, "postern_ready", 0)

	f.relayStart()
	check("/readyz", 200, "ready")
	f.scrape(t).want(t, "postern_ready", 1)

	f.relay.SetDraining(true)
	check("/readyz", 503, "draining")
	check("/healthz", 200, "ok")
	f.relay.SetDraining(false)
	check("/readyz", 200, "ready")

	f.stopRelay()
	_ = f.relay.Wait()
	check("/readyz", 503, "stopping")
	check("/healthz", 200, "ok")
}

func TestBearerToken(t *testing.T) {
	f := newFixture(t, testToken)
	f.relayStart()
	tests := []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", "wrong", 401},
		{"GET", "/metrics", testToken + "x", 401},
		{"GET", "/metrics", testToken, 200},
		{"GET", "/api/sessions", "", 401},
		{"GET", "/api/sessions", testToken, 200},
		{"DELETE", "/api/sessions/1", "", 401},
		{"DELETE", "/api/sessions?user=alice", "", 401},
		{"POST", "/api/drain", "", 401},
		{"DELETE", "/api/drain", "", 401},
		{"GET", "/api/drain", testToken, 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/", "", 200},
		{"GET", "/nope", testToken, 404},
		{"POST", "/api/sessions", testToken, 405},
	}
	for _, tt := range tests {
		if code, body := f.get(t, tt.method, tt.path, tt.token); code != tt.want {
			t.Errorf("%s %s with token %q = %d %s, want %d", tt.method, tt.path, tt.token, code, body, tt.want)
		}
	}
	// Without a configured token everything is open.
	open := newFixture(t, "")
	open.relayStart()
	if code, _ := open.get(t, "GET", "/metrics", ""); code != 200 {
		t.Errorf("/metrics without a configured token = %d, want 200", code)
	}
	// The client reports a wrong token as a 401 StatusError.
	c := &admin.Client{Addr: f.base, Token: "wrong"}
	_, err := c.Sessions(t.Context(), "")
	var se *admin.StatusError
	if !errors.As(err, &se) || se.Status != 401 {
		t.Errorf("client with a wrong token: err = %v, want a 401 StatusError", err)
	}
}

func TestSessionsAPI(t *testing.T) {
	f := newFixture(t, testToken)
	f.relayStart()
	c := &admin.Client{Addr: f.admin.Addr().String(), Token: testToken}

	list, err := c.Sessions(t.Context(), "")
	if err != nil || len(list) != 0 {
		t.Fatalf("Sessions on an idle server = %v, %v", list, err)
	}
	alice, aliceConn := turnClient(t, f.udp, "alice", "wonderland", false)
	rc, err := alice.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	peer := turntest.EchoPeer(t)
	echo(t, rc, peer.LocalAddr(), []byte("hello"))
	turntest.WaitFor(t, "pion's channel binding", func() bool { return f.relay.Stats().Channels == 1 })
	// The echo reached the client before the relay loop counted it (the
	// count follows the send): wait for the counter, not the packet.
	turntest.WaitFor(t, "the echo to be counted", func() bool {
		ss := f.relay.Sessions("alice")
		return len(ss) == 1 && ss[0].ToClient.Packets >= 1
	})
	bob, _ := turnClient(t, f.tls, "bob", "builder", true)
	if _, err := bob.Allocate(); err != nil {
		t.Fatal(err)
	}

	list, err = c.Sessions(t.Context(), "alice")
	if err != nil || len(list) != 1 {
		t.Fatalf("Sessions(alice) = %v, %v", list, err)
	}
	s := list[0]
	if s.User != "alice" || s.Username != "alice" || s.Client != aliceConn.LocalAddr().String() ||
		s.Transport != "udp" || s.Listener != "udp://"+f.udp || s.Relayed != rc.LocalAddr().String() {
		t.Errorf("session %+v", s)
	}
	if s.LifetimeLeftSeconds <= 0 || s.LifetimeLeftSeconds > 600 || s.AgeSeconds < 0 || s.AgeSeconds > 60 {
		t.Errorf("age %d s, lifetime left %d s", s.AgeSeconds, s.LifetimeLeftSeconds)
	}
	if len(s.Permissions) != 1 || s.Permissions[0].Peer != turntest.PeerIP ||
		len(s.Channels) != 1 || s.Channels[0].Peer != peer.LocalAddr().String() || s.Channels[0].Number < 0x4000 {
		t.Errorf("permissions %+v channels %+v", s.Permissions, s.Channels)
	}
	if s.ToPeer.Packets < 1 || s.ToPeer.Bytes < 5 || s.ToClient.Packets < 1 {
		t.Errorf("traffic to peer %+v to client %+v", s.ToPeer, s.ToClient)
	}
	all, _ := c.Sessions(t.Context(), "")
	if len(all) != 2 || all[1].Transport != "tls" {
		t.Errorf("all sessions: %+v", all)
	}

	// Errors: bad ID, unknown ID, kick without a user.
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"DELETE", "/api/sessions/abc", 400},
		{"DELETE", "/api/sessions/987654", 404},
		{"DELETE", "/api/sessions", 400},
	} {
		code, body := f.get(t, tt.method, tt.path, testToken)
		if code != tt.want || !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s = %d %s, want %d with an error message", tt.method, tt.path, code, body, tt.want)
		}
	}

	if err := c.Kick(t.Context(), s.ID); err != nil {
		t.Fatalf("Kick(%d): %v", s.ID, err)
	}
	var se *admin.StatusError
	if err := c.Kick(t.Context(), s.ID); !errors.As(err, &se) || se.Status != 404 {
		t.Errorf("second Kick(%d) = %v, want 404", s.ID, err)
	}
	n, err := c.KickUser(t.Context(), "bob")
	if err != nil || n != 1 {
		t.Errorf("KickUser(bob) = %d, %v; want 1", n, err)
	}
	if list, _ := c.Sessions(t.Context(), ""); len(list) != 0 {
		t.Errorf("sessions left after kicks: %+v", list)
	}
}
