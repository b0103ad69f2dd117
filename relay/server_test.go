package relay_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

const (
	testRealm    = "postern.test"
	testUser     = "alice"
	testPassword = "wonderland"
	testSecret   = "rest-secret"
)

// testServer is a real Server on 127.0.0.1 with one listener of each kind.
type testServer struct {
	*relay.Server
	addrs map[relay.ListenerKind]string
}

type serverOption func(*relay.Config)

func withQuota(n int) serverOption { return func(c *relay.Config) { c.UserQuota = n } }

func withPolicy(p *auth.PeerPolicy) serverOption { return func(c *relay.Config) { c.Policy = p } }

func withRateLimit(perSecond float64, burst int) serverOption {
	return func(c *relay.Config) { c.UnauthenticatedRate, c.UnauthenticatedBurst = perSecond, burst }
}

func withAuth(a *auth.Authenticator) serverOption { return func(c *relay.Config) { c.Auth = a } }

func newAuth(t testing.TB, nonceLifetime time.Duration) *auth.Authenticator {
	t.Helper()
	a, err := auth.New(auth.Config{
		Realm:         testRealm,
		Users:         map[string]string{testUser: testPassword, "bob": "builder"},
		Secrets:       []string{testSecret},
		NonceLifetime: nonceLifetime,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testRelayPorts is the relay range of test servers: Linux's ephemeral
// ports and the default range.
var testRelayPorts = allocations.PortRange{Low: 32768, High: 65535}

func loopbackPolicy() *auth.PeerPolicy {
	return auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil)
}

func startServer(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	cfg := relay.Config{
		Listeners: []relay.ListenSpec{
			{Kind: relay.UDP, Addr: "127.0.0.1:0"},
			{Kind: relay.TCP, Addr: "127.0.0.1:0"},
			{Kind: relay.TLS, Addr: "127.0.0.1:0"},
			{Kind: relay.TCPTLS, Addr: "127.0.0.1:0"},
		},
		ListenersExplicit: true,
		Auth:              newAuth(t, 0),
		Policy:            loopbackPolicy(),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		// Test peers are sockets on 127.0.0.1, one of the server's own
		// addresses, at ephemeral ports (32768-60999 on Linux): the
		// own-address rule (relay/self.go) lets them through only inside
		// the relay range, so the range covers the ephemeral ports.
		RelayPorts: testRelayPorts,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Software:   "postern-test",
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	turntest.Start(t, s)
	ts := &testServer{Server: s, addrs: map[relay.ListenerKind]string{}}
	for _, b := range s.Addrs() {
		ts.addrs[b.Kind] = b.Addr.String()
	}
	return ts
}

// clientConn dials the server the way a client of the given kind does.
func clientConn(t testing.TB, kind relay.ListenerKind, addr string, useTLS bool) net.PacketConn {
	t.Helper()
	switch {
	case kind == relay.UDP:
		return turntest.ListenUDP(t)
	case useTLS:
		return turn.NewSTUNConn(turntest.DialTLS(t, addr))
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return turn.NewSTUNConn(c)
}

func newClient(t testing.TB, conn net.PacketConn, addr, user, password string) *turn.Client {
	t.Helper()
	return turntest.Client(t, conn, addr, turn.ClientConfig{Username: user, Password: password, Realm: testRealm})
}

// roundTrip sends count distinct messages through the relay to an echo peer
// and checks each comes back intact. The first writes travel as Send
// indications while pion binds a channel; the later ones as ChannelData.
func roundTrip(t *testing.T, relayConn net.PacketConn, peer net.Addr, count int) {
	t.Helper()
	buf := make([]byte, 2048)
	for i := range count {
		want := []byte(fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*7%300)))
		got := false
		for try := 0; try < 5 && !got; try++ {
			if _, err := relayConn.WriteTo(want, peer); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			_ = relayConn.SetReadDeadline(time.Now().Add(time.Second))
			for {
				n, from, err := relayConn.ReadFrom(buf)
				if err != nil {
					break // timeout: send again
				}
				if from.String() != peer.String() {
					t.Fatalf("data from %v, want the peer %v", from, peer)
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

func TestRelayEveryTransport(t *testing.T) {
	s := startServer(t)
	cases := []struct {
		name      string
		kind      relay.ListenerKind
		tls       bool
		transport allocations.Transport
	}{
		{"udp", relay.UDP, false, allocations.UDP},
		{"tcp", relay.TCP, false, allocations.TCP},
		{"tls", relay.TLS, true, allocations.TLS},
		{"tcp+tls plain", relay.TCPTLS, false, allocations.TCP},
		{"tcp+tls tls", relay.TCPTLS, true, allocations.TLS},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := s.addrs[tc.kind]
			client := newClient(t, clientConn(t, tc.kind, addr, tc.tls), addr, testUser, testPassword)
			relayConn, err := client.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			defer relayConn.Close()
			peer := turntest.EchoPeer(t)
			roundTrip(t, relayConn, peer.LocalAddr(), 30)

			// The allocation is in the shared table, made over the right
			// transport, and pion has moved to a channel (ChannelData path).
			var found *allocations.Allocation
			s.Table().Range(func(a *allocations.Allocation) bool {
				if a.Relayed.String() == relayConn.LocalAddr().String() {
					found = a
				}
				return true
			})
			if found == nil {
				t.Fatalf("allocation for %v not in the table", relayConn.LocalAddr())
			}
			if found.FiveTuple.Transport != tc.transport {
				t.Errorf("transport = %v, want %v", found.FiveTuple.Transport, tc.transport)
			}
			// pion binds its channel in the background while the first
			// writes go as Send indications: give it a moment, then the
			// later writes must have used it.
			peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			deadline := time.Now().Add(2 * time.Second)
			for {
				if _, ok := found.PeerChannel(peerAP, time.Now()); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no channel bound to %v: the ChannelData path was not exercised", peerAP)
				}
				time.Sleep(10 * time.Millisecond)
			}
			roundTrip(t, relayConn, peer.LocalAddr(), 10) // over the channel
		})
	}
}

func TestRESTCredentials(t *testing.T) {
	s := startServer(t)
	user, pass := auth.MintREST(testSecret, "carol", time.Hour, time.Now())
	addr := s.addrs[relay.UDP]
	client := newClient(t, clientConn(t, relay.UDP, addr, false), addr, user, pass)
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate with REST credential: %v", err)
	}
	defer relayConn.Close()
	roundTrip(t, relayConn, turntest.EchoPeer(t).LocalAddr(), 5)

	expiredUser, expiredPass := auth.MintREST(testSecret, "carol", -time.Minute, time.Now())
	client2 := newClient(t, clientConn(t, relay.UDP, addr, false), addr, expiredUser, expiredPass)
	if _, err := client2.Allocate(); err == nil {
		t.Fatal("allocate with an expired REST credential succeeded")
	}
}

func TestWrongPasswordFails(t *testing.T) {
	s := startServer(t)
	for _, kind := range []relay.ListenerKind{relay.UDP, relay.TCP} {
		addr := s.addrs[kind]
		client := newClient(t, clientConn(t, kind, addr, false), addr, testUser, "not-the-password")
		_, err := client.Allocate()
		if err == nil {
			t.Fatalf("%v: allocate with a wrong password succeeded", kind)
		}
		if !strings.Contains(err.Error(), "401") {
			t.Errorf("%v: error %q does not carry 401", kind, err)
		}
	}
	if n := s.Table().Len(); n != 0 {
		t.Errorf("table has %d allocations after failed attempts", n)
	}
}

func TestQuotaAcrossListeners(t *testing.T) {
	s := startServer(t, withQuota(1))
	udpAddr, tcpAddr := s.addrs[relay.UDP], s.addrs[relay.TCP]
	first := newClient(t, clientConn(t, relay.UDP, udpAddr, false), udpAddr, testUser, testPassword)
	rc, err := first.Allocate()
	if err != nil {
		t.Fatalf("first allocation: %v", err)
	}
	defer rc.Close()

	second := newClient(t, clientConn(t, relay.TCP, tcpAddr, false), tcpAddr, testUser, testPassword)
	_, err = second.Allocate()
	if err == nil {
		t.Fatal("second allocation over TCP for the same user succeeded despite quota 1")
	}
	if !strings.Contains(err.Error(), "486") {
		t.Errorf("error %q does not carry 486 Allocation Quota Reached", err)
	}

	// Another user is not affected.
	other := newClient(t, clientConn(t, relay.TCP, tcpAddr, false), tcpAddr, "bob", "builder")
	rc2, err := other.Allocate()
	if err != nil {
		t.Fatalf("another user's allocation: %v", err)
	}
	defer rc2.Close()
}

func TestLoopbackPeerDeniedByDefault(t *testing.T) {
	s := startServer(t, withPolicy(auth.NewPeerPolicy(nil, nil)))
	addr := s.addrs[relay.UDP]
	client := newClient(t, clientConn(t, relay.UDP, addr, false), addr, testUser, testPassword)
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relayConn.Close()
	peer := turntest.EchoPeer(t)
	err = client.CreatePermission(peer.LocalAddr())
	if err == nil {
		t.Fatal("CreatePermission to a loopback peer succeeded without --allow-peer")
	}
	if !strings.Contains(err.Error(), "403") {
		t.Errorf("error %q does not carry 403 Forbidden", err)
	}
	// Nothing reaches the peer either way.
	_, _ = relayConn.WriteTo([]byte("leak?"), peer.LocalAddr())
	_ = peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := peer.ReadFrom(make([]byte, 64)); err == nil {
		t.Fatalf("loopback peer received %d bytes through a denied relay", n)
	}
}

func TestBindingOnEveryListener(t *testing.T) {
	s := startServer(t)
	for _, tc := range []struct {
		kind relay.ListenerKind
		tls  bool
	}{{relay.UDP, false}, {relay.TCP, false}, {relay.TLS, true}, {relay.TCPTLS, false}, {relay.TCPTLS, true}} {
		addr := s.addrs[tc.kind]
		conn := clientConn(t, tc.kind, addr, tc.tls)
		client := newClient(t, conn, addr, "", "")
		mapped, err := client.SendBindingRequest()
		if err != nil {
			t.Fatalf("%v tls=%v: binding: %v", tc.kind, tc.tls, err)
		}
		if host, _, _ := net.SplitHostPort(mapped.String()); host != "127.0.0.1" {
			t.Errorf("%v tls=%v: mapped address %v, want 127.0.0.1:*", tc.kind, tc.tls, mapped)
		}
	}
}

// TestDualStackListener relays through a UDP listener on ":port", what the
// default listeners are: a dual-stack IPv6 socket answering an IPv4 client,
// which the data plane's raw sends address with an IPv4 sockaddr.
func TestDualStackListener(t *testing.T) {
	s := startServer(t, func(c *relay.Config) {
		c.Listeners = []relay.ListenSpec{{Kind: relay.UDP, Addr: ":0"}}
	})
	_, port, err := net.SplitHostPort(s.addrs[relay.UDP])
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	client := newClient(t, clientConn(t, relay.UDP, addr, false), addr, testUser, testPassword)
	rc, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	roundTrip(t, rc, turntest.EchoPeer(t).LocalAddr(), 20)
}
