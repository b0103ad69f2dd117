package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// tlsStream gives a TURN/TLS connection the TCP methods pion's
// TCPAllocation asks of a data connection (transport.TCPConn), so that its
// client can bind data connections over TLS too.
type tlsStream struct {
	*tls.Conn
	tcp *net.TCPConn
}

func (c tlsStream) CloseRead() error { return c.tcp.CloseRead() }
func (c tlsStream) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
func (c tlsStream) SetLinger(sec int) error                  { return c.tcp.SetLinger(sec) }
func (c tlsStream) SetKeepAlive(on bool) error               { return c.tcp.SetKeepAlive(on) }
func (c tlsStream) SetKeepAlivePeriod(d time.Duration) error { return c.tcp.SetKeepAlivePeriod(d) }
func (c tlsStream) SetNoDelay(on bool) error                 { return c.tcp.SetNoDelay(on) }
func (c tlsStream) SetWriteBuffer(n int) error               { return c.tcp.SetWriteBuffer(n) }
func (c tlsStream) SetReadBuffer(n int) error                { return c.tcp.SetReadBuffer(n) }

// dataConn opens a new connection to the listener at addr for a
// ConnectionBind, plain or TLS, closed when the test ends.
func dataConn(t *testing.T, addr string, useTLS bool) net.Conn {
	t.Helper()
	if useTLS {
		tc := turntest.DialTLS(t, addr)
		return tlsStream{Conn: tc, tcp: tc.NetConn().(*net.TCPConn)}
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// tcpPeer is a TCP peer on loopback that echoes what each connection
// sends, and remembers the connections it accepted.
type tcpPeer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newTCPPeer(t *testing.T) *tcpPeer {
	t.Helper()
	ln, err := net.Listen("tcp4", turntest.PeerIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpPeer{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
	return p
}

func (p *tcpPeer) addr() netip.AddrPort { return p.ln.Addr().(*net.TCPAddr).AddrPort() }

// accepted returns the i-th connection the peer accepted, waiting for it.
func (p *tcpPeer) accepted(t *testing.T, i int) net.Conn {
	t.Helper()
	var c net.Conn
	turntest.WaitFor(t, "the peer to accept a connection", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.conns) > i {
			c = p.conns[i]
		}
		return c != nil
	})
	return c
}

// echoStream sends count distinct messages on c and reads each back whole.
func echoStream(t *testing.T, c net.Conn, count int) {
	t.Helper()
	buf := make([]byte, 4096)
	for i := range count {
		msg := []byte(fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*37%3000)))
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !bytes.Equal(buf[:len(msg)], msg) {
			t.Fatalf("message %d came back as %q", i, buf[:len(msg)])
		}
	}
	_ = c.SetDeadline(time.Time{})
}

// waitClosed fails the test unless c's other end closes within 5 s.
func waitClosed(t *testing.T, what string, c net.Conn) {
	t.Helper()
	if !closedWithin(c, 5*time.Second) {
		t.Fatalf("%s still open after 5 s", what)
	}
}

// tcpAllocation finds the TCP allocation whose relayed address is relayed.
func tcpAllocation(t *testing.T, s *testServer, relayed net.Addr) *allocations.Allocation {
	t.Helper()
	var found *allocations.Allocation
	s.Table().Range(func(a *allocations.Allocation) bool {
		if a.TCP != nil && a.Relayed.String() == relayed.String() {
			found = a
		}
		return found == nil
	})
	if found == nil {
		t.Fatalf("no TCP allocation relayed at %v", relayed)
	}
	return found
}

// TestTCPAllocation relays 100 messages each way between pion's client and
// a TCP peer through a TCP allocation (RFC 6062), over TCP and TLS client
// transports: once to a peer the client connects to (Connect), once from a
// peer that connects in (ConnectionAttempt). Deleting the allocation then
// closes both data connections.
func TestTCPAllocation(t *testing.T) {
	s := startServer(t)
	for _, tc := range []struct {
		name string
		kind relay.ListenerKind
		tls  bool
	}{
		{"tcp", relay.TCP, false},
		{"tls", relay.TLS, true},
		{"tcp+tls tls", relay.TCPTLS, true},
	} {
		addr := s.addrs[tc.kind]
		t.Run(tc.name+"/connect", func(t *testing.T) {
			client := newClient(t, clientConn(t, tc.kind, addr, tc.tls), addr, testUser, testPassword)
			alloc, err := client.AllocateTCP()
			if err != nil {
				t.Fatalf("AllocateTCP: %v", err)
			}
			peer := newTCPPeer(t)
			conn, err := alloc.DialWithConn(dataConn(t, addr, tc.tls), "tcp4", peer.addr().String())
			if err != nil {
				t.Fatalf("Connect and ConnectionBind: %v", err)
			}
			echoStream(t, conn, 100)
			a := tcpAllocation(t, s, alloc.Addr())
			if a.FiveTuple.Transport.String() != map[bool]string{false: "tcp", true: "tls"}[tc.tls] {
				t.Errorf("allocation over %v", a.FiveTuple.Transport)
			}
			if p, b := a.ToPeer.Load(); p == 0 || b == 0 {
				t.Errorf("ToPeer counted %d reads, %d bytes", p, b)
			}
			// The peer saw the relayed address as the connection's source
			// (RFC 6062 §5.2: the local endpoint is the relayed address).
			if got := peer.accepted(t, 0).RemoteAddr().String(); got != alloc.Addr().String() {
				t.Errorf("peer sees the connection from %v, want the relayed address %v", got, alloc.Addr())
			}
			// Refresh with lifetime 0: the allocation ends, and both data
			// connections with it.
			if err := alloc.Close(); err != nil {
				t.Fatalf("close allocation: %v", err)
			}
			waitClosed(t, "client data connection", conn)
			waitClosed(t, "peer data connection", peer.accepted(t, 0))
		})
		t.Run(tc.name+"/incoming", func(t *testing.T) {
			client := newClient(t, clientConn(t, tc.kind, addr, tc.tls), addr, testUser, testPassword)
			alloc, err := client.AllocateTCP()
			if err != nil {
				t.Fatalf("AllocateTCP: %v", err)
			}
			if err := client.CreatePermission(&net.TCPAddr{IP: net.ParseIP(turntest.PeerIP)}); err != nil {
				t.Fatalf("CreatePermission: %v", err)
			}
			pc, err := dialAsPeer(alloc.Addr().String())
			if err != nil {
				t.Fatalf("peer dials the relayed address: %v", err)
			}
			t.Cleanup(func() { _ = pc.Close() })
			go func() { _, _ = io.Copy(pc, pc) }()
			_ = alloc.SetDeadline(time.Now().Add(5 * time.Second))
			conn, err := alloc.AcceptTCPWithConn(dataConn(t, addr, tc.tls))
			if err != nil {
				t.Fatalf("ConnectionAttempt and ConnectionBind: %v", err)
			}
			if conn.RemoteAddr().String() != pc.LocalAddr().String() {
				t.Errorf("ConnectionAttempt names %v, want the peer %v", conn.RemoteAddr(), pc.LocalAddr())
			}
			echoStream(t, conn, 100)
			a := tcpAllocation(t, s, alloc.Addr())
			if p, b := a.ToClient.Load(); p == 0 || b == 0 {
				t.Errorf("ToClient counted %d reads, %d bytes", p, b)
			}
			s.Table().Delete(a.FiveTuple)
			waitClosed(t, "client data connection", conn)
			waitClosed(t, "peer data connection", pc)
		})
	}
}

// streamClient speaks STUN by hand over one TCP connection, reading whole
// frames, to check the exact answers RFC 6062 asks for.
type streamClient struct {
	t          *testing.T
	conn       net.Conn
	br         *bufio.Reader // what fr reads through: after a ConnectionBind, the first data
	fr         *proto.Framer
	nonce      stun.Nonce
	user, pass string
	relayed    netip.AddrPort  // of the TCP allocation it made
	attempts   []*stun.Message // ConnectionAttempt indications received
}

func newStreamClient(t *testing.T, addr string) *streamClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	br := bufio.NewReaderSize(c, proto.FramerBufferSize)
	return &streamClient{t: t, conn: c, br: br, fr: proto.NewFramer(br), user: testUser, pass: testPassword}
}

// data is the connection as a bound data connection: reads start with
// what the framer had buffered.
func (c *streamClient) data() net.Conn { return bufferedConn{Conn: c.conn, r: c.br} }

type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// next returns the next STUN message within timeout, or nil.
func (c *streamClient) next(timeout time.Duration) *stun.Message {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	frame, kind, err := c.fr.Next()
	if err != nil {
		if isTimeout(err) {
			return nil
		}
		c.t.Fatalf("read: %v", err)
	}
	if kind != proto.KindSTUN {
		c.t.Fatalf("got %v, want STUN", kind)
	}
	m := &stun.Message{Raw: append([]byte(nil), frame...)}
	if err := m.Decode(); err != nil {
		c.t.Fatalf("undecodable: %v", err)
	}
	return m
}

func (c *streamClient) exchange(req *stun.Message, timeout time.Duration) *stun.Message {
	c.t.Helper()
	if _, err := c.conn.Write(req.Raw); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m := c.next(time.Until(deadline))
		if m == nil {
			break
		}
		if m.Type.Method == stun.MethodConnectionAttempt && m.Type.Class == stun.ClassIndication {
			c.attempts = append(c.attempts, m)
			continue
		}
		if m.TransactionID == req.TransactionID {
			return m
		}
	}
	c.t.Fatalf("no answer to %v", req.Type)
	return nil
}

func (c *streamClient) authed(method stun.Method, setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	if c.nonce == nil {
		resp := c.exchange(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			proto.RequestedTransport(proto.ProtoTCP)), 5*time.Second)
		if err := c.nonce.GetFrom(resp); err != nil {
			c.t.Fatalf("challenge carries no NONCE: %v", err)
		}
	}
	all := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, setters...)
	all = append(all, stun.NewUsername(c.user), stun.NewRealm(testRealm), c.nonce,
		stun.NewLongTermIntegrity(c.user, testRealm, c.pass), stun.Fingerprint)
	// A Connect may wait for its dial: up to RFC 6062's 30 s, here a
	// refused loopback port answers at once.
	return c.exchange(stun.MustBuild(all...), 10*time.Second)
}

// allocateTCP makes a TCP allocation and returns its relayed address.
func (c *streamClient) allocateTCP() netip.AddrPort {
	c.t.Helper()
	resp := c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoTCP))
	wantCode(c.t, "TCP Allocate", resp, 0)
	relayed, err := proto.GetXORAddress(resp, stun.AttrXORRelayedAddress)
	if err != nil {
		c.t.Fatal(err)
	}
	c.relayed = relayed
	if resp.Contains(stun.AttrReservationToken) {
		c.t.Error("RFC 6062 §5.1: RESERVATION-TOKEN in a TCP Allocate's success response")
	}
	return relayed
}

// connect sends Connect to peer and returns the CONNECTION-ID of a success.
func (c *streamClient) connect(peer netip.AddrPort, want stun.ErrorCode) proto.ConnectionID {
	c.t.Helper()
	resp := c.authed(stun.MethodConnect, stunPeer(peer))
	wantCode(c.t, "Connect to "+peer.String(), resp, want)
	var cid proto.ConnectionID
	if want == 0 {
		if err := cid.GetFrom(resp); err != nil {
			c.t.Fatalf("Connect success without CONNECTION-ID: %v", err)
		}
	}
	return cid
}

// closedPort returns a loopback TCP port nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", turntest.PeerIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	_ = ln.Close()
	return ap
}

// TestTCPAllocationErrors checks the error answers of RFC 6062 §5.1, §5.2
// and §5.4.
func TestTCPAllocationErrors(t *testing.T) {
	s := startServer(t)
	addr := s.addrs[relay.TCP]

	// §5.1: over UDP, 400; DONT-FRAGMENT, EVEN-PORT, RESERVATION-TOKEN: 400.
	u := newRawClient(t, s.addrs[relay.UDP])
	wantCode(t, "TCP Allocate over UDP", u.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoTCP)), stun.CodeBadRequest)
	for name, set := range map[string]stun.Setter{
		"DONT-FRAGMENT": proto.DontFragment{}, "EVEN-PORT": proto.EvenPort{},
		"RESERVATION-TOKEN": proto.ReservationToken{1, 2, 3, 4, 5, 6, 7, 8},
	} {
		c := newStreamClient(t, addr)
		wantCode(t, "TCP Allocate with "+name, c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoTCP), set), stun.CodeBadRequest)
	}
	// Connect and ConnectionBind over UDP: 400 (a UDP allocation has no
	// TCP relay; ConnectionBind needs TCP or TLS).
	u.allocate()
	peer := newTCPPeer(t)
	wantCode(t, "Connect on a UDP allocation", u.authed(stun.MethodConnect, stunPeer(peer.addr())), stun.CodeBadRequest)
	wantCode(t, "ConnectionBind over UDP", u.authed(stun.MethodConnectionBind, proto.ConnectionID(1)), stun.CodeBadRequest)

	c := newStreamClient(t, addr)
	// §5.2: Connect without an allocation: 437.
	c.connect(peer.addr(), stun.CodeAllocMismatch)
	c.allocateTCP()
	// Without a permission for the peer: 403.
	c.connect(peer.addr(), stun.CodeForbidden)
	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peer.addr())), 0)
	// A Send indication on a TCP allocation relays nothing (it has no UDP
	// relay socket) and breaks nothing: the next requests are answered.
	send := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		stunPeer(peer.addr()), proto.Data("x"))
	if _, err := c.conn.Write(send.Raw); err != nil {
		t.Fatal(err)
	}
	// No XOR-PEER-ADDRESS: 400.
	wantCode(t, "Connect without XOR-PEER-ADDRESS", c.authed(stun.MethodConnect), stun.CodeBadRequest)
	// A peer that refuses: 447.
	c.connect(closedPort(t), 447)
	// Connected; a second Connect to the same peer while the first is
	// pending: 446.
	cid := c.connect(peer.addr(), 0)
	c.connect(peer.addr(), 446)
	// A denied peer (the policy narrowed by a reload after the
	// permission was made): 403.
	other := newTCPPeer(t)
	s.SetPolicy(auth.NewPeerPolicy(nil, nil))
	c.connect(other.addr(), stun.CodeForbidden)
	s.SetPolicy(loopbackPolicy())
	// A TCP allocation has no channels.
	wantCode(t, "ChannelBind on a TCP allocation", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4000), stunPeer(peer.addr())), stun.CodeBadRequest)

	// §5.4: ConnectionBind on the control connection, with a CONNECTION-ID
	// nobody issued, with none, or by another user: refused.
	wantCode(t, "ConnectionBind on the control connection", c.authed(stun.MethodConnectionBind, cid), stun.CodeBadRequest)
	d := newStreamClient(t, addr)
	wantCode(t, "ConnectionBind with an unknown CONNECTION-ID", d.authed(stun.MethodConnectionBind, cid+1), stun.CodeBadRequest)
	wantCode(t, "ConnectionBind without CONNECTION-ID", d.authed(stun.MethodConnectionBind), stun.CodeBadRequest)
	d.user, d.pass = "bob", "builder"
	wantCode(t, "ConnectionBind by another user", d.authed(stun.MethodConnectionBind, cid), stun.CodeWrongCredentials)
	// The owner binds it; a second bind of the same id is refused.
	d.user, d.pass = testUser, testPassword
	wantCode(t, "ConnectionBind", d.authed(stun.MethodConnectionBind, cid), 0)
	echoStream(t, d.data(), 10)
	e := newStreamClient(t, addr)
	wantCode(t, "second ConnectionBind of one CONNECTION-ID", e.authed(stun.MethodConnectionBind, cid), stun.CodeBadRequest)
	// Once the data connection closes, the peer's connection closes and
	// the peer may be connected to again.
	_ = d.conn.Close()
	waitClosed(t, "peer data connection", peer.accepted(t, 0))
	turntest.WaitFor(t, "a new Connect to the peer", func() bool {
		resp := c.authed(stun.MethodConnect, stunPeer(peer.addr()))
		return errCode(t, resp) == 0
	})
}

// TestTCPAllocationBindTimeout checks RFC 6062 §5.2: a peer data
// connection whose ConnectionBind does not come in time is closed (here
// after 300 ms instead of 30 s), and its CONNECTION-ID forgotten.
func TestTCPAllocationBindTimeout(t *testing.T) {
	s := startServer(t, func(c *relay.Config) { relay.SetTCPBindTimeout(c, 300*time.Millisecond) })
	c := newStreamClient(t, s.addrs[relay.TCP])
	c.allocateTCP()
	peer := newTCPPeer(t)
	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peer.addr())), 0)
	cid := c.connect(peer.addr(), 0)
	start := time.Now()
	waitClosed(t, "unbound peer data connection", peer.accepted(t, 0))
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("closed after %v, before the bind timeout", d)
	}
	d := newStreamClient(t, s.addrs[relay.TCP])
	wantCode(t, "ConnectionBind after the timeout", d.authed(stun.MethodConnectionBind, cid), stun.CodeBadRequest)
}

// TestTCPAllocationIncomingPermission checks RFC 6062 §5.3: a peer with no
// permission that connects to the relayed address is closed at once and
// the client hears nothing of it; with a permission the client gets a
// ConnectionAttempt naming the peer.
func TestTCPAllocationIncomingPermission(t *testing.T) {
	s := startServer(t)
	c := newStreamClient(t, s.addrs[relay.TCP])
	relayed := c.allocateTCP()
	pc, err := dialAsPeer(relayed.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	waitClosed(t, "peer connection without permission", pc)
	if m := c.next(300 * time.Millisecond); m != nil {
		t.Fatalf("client got %v for a peer without permission", m.Type)
	}

	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(netip.AddrPortFrom(netip.MustParseAddr(turntest.PeerIP), 1))), 0)
	pc2, err := dialAsPeer(relayed.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc2.Close()
	m := c.next(5 * time.Second)
	if m == nil || m.Type != stun.NewType(stun.MethodConnectionAttempt, stun.ClassIndication) {
		t.Fatalf("got %v, want a ConnectionAttempt indication", m)
	}
	from, err := proto.GetXORAddress(m, stun.AttrXORPeerAddress)
	if err != nil || from.String() != pc2.LocalAddr().String() {
		t.Errorf("ConnectionAttempt XOR-PEER-ADDRESS %v (%v), want %v", from, err, pc2.LocalAddr())
	}
	var cid proto.ConnectionID
	if err := cid.GetFrom(m); err != nil {
		t.Errorf("ConnectionAttempt without CONNECTION-ID: %v", err)
	}
	// What the peer sent before the bind reaches the client after it.
	if _, err := pc2.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	d := newStreamClient(t, s.addrs[relay.TCP])
	wantCode(t, "ConnectionBind", d.authed(stun.MethodConnectionBind, cid), 0)
	got := make([]byte, 5)
	_ = d.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(d.data(), got); err != nil || string(got) != "early" {
		t.Errorf("client data connection read %q (%v), want the peer's early bytes", got, err)
	}
}

// TestTCPAllocationLimits checks that a TCP allocation counts against the
// allocation quotas like a UDP one, and its peer data connections against
// max_conns.
func TestTCPAllocationLimits(t *testing.T) {
	t.Run("quota", func(t *testing.T) {
		s := startServer(t, withQuota(1))
		c := newStreamClient(t, s.addrs[relay.TCP])
		c.allocateTCP()
		d := newStreamClient(t, s.addrs[relay.TCP])
		wantCode(t, "second TCP allocation", d.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoTCP)), stun.CodeAllocQuotaReached)
		u := newRawClient(t, s.addrs[relay.UDP])
		wantCode(t, "UDP allocation beside it", u.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), stun.CodeAllocQuotaReached)
	})
	t.Run("max_conns", func(t *testing.T) {
		// The control connection, one peer connection, one client data
		// connection: three. A second peer connection is one too many.
		s := startServer(t, func(c *relay.Config) { c.MaxConns = 3 })
		c := newStreamClient(t, s.addrs[relay.TCP])
		c.allocateTCP()
		peer, other := newTCPPeer(t), newTCPPeer(t)
		wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peer.addr())), 0)
		cid := c.connect(peer.addr(), 0)
		d := newStreamClient(t, s.addrs[relay.TCP])
		wantCode(t, "ConnectionBind", d.authed(stun.MethodConnectionBind, cid), 0)
		c.connect(other.addr(), stun.CodeInsufficientCapacity)
	})
}

// boundPair makes a TCP allocation over a raw client, connects it to an
// echoing peer and binds a data connection to it.
func boundPair(t *testing.T, addr string) (control, data *streamClient, peer *tcpPeer) {
	t.Helper()
	c := newStreamClient(t, addr)
	c.allocateTCP()
	peer = newTCPPeer(t)
	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peer.addr())), 0)
	cid := c.connect(peer.addr(), 0)
	d := newStreamClient(t, addr)
	wantCode(t, "ConnectionBind", d.authed(stun.MethodConnectionBind, cid), 0)
	return c, d, peer
}

// TestTCPAllocationPacing checks that the packet path's limits hold on
// data connections: the bandwidth limit paces them (a stream cannot drop),
// and a reload that denies the peer ends them.
func TestTCPAllocationPacing(t *testing.T) {
	t.Run("bandwidth", func(t *testing.T) {
		// 100 000 B/s with a burst of as much: 250 000 bytes echoed take
		// at least 1.5 s each way, the two ways limited separately.
		s := startServer(t, func(c *relay.Config) { c.AllocationBandwidth = 100_000 })
		_, d, _ := boundPair(t, s.addrs[relay.TCP])
		const total = 250_000
		start := time.Now()
		go func() { _, _ = d.conn.Write(bytes.Repeat([]byte{'b'}, total)) }()
		_ = d.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadFull(d.data(), make([]byte, total))
		if err != nil {
			t.Fatalf("read %d of %d bytes: %v", got, total, err)
		}
		if el := time.Since(start); el < 1400*time.Millisecond {
			t.Errorf("%d bytes relayed in %v: faster than 100 000 B/s allows", total, el)
		}
	})
	t.Run("policy reload", func(t *testing.T) {
		s := startServer(t)
		_, d, peer := boundPair(t, s.addrs[relay.TCP])
		echoStream(t, d.data(), 3)
		s.SetPolicy(auth.NewPeerPolicy(nil, nil))
		_, _ = d.conn.Write([]byte("after the reload"))
		waitClosed(t, "peer data connection", peer.accepted(t, 0))
		waitClosed(t, "client data connection", d.data())
	})
}

// TestTCPAllocationShutdown checks that stopping the server closes bound
// data connections on both sides and stops in time.
func TestTCPAllocationShutdown(t *testing.T) {
	s, err := relay.New(relay.Config{
		Listeners:         []relay.ListenSpec{{Kind: relay.TCP, Addr: "127.0.0.1:0"}},
		ListenersExplicit: true,
		Auth:              newAuth(t, 0),
		Policy:            loopbackPolicy(),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0].Addr.String()
	c := newStreamClient(t, addr)
	c.allocateTCP()
	peer := newTCPPeer(t)
	wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(peer.addr())), 0)
	cid := c.connect(peer.addr(), 0)
	d := newStreamClient(t, addr)
	wantCode(t, "ConnectionBind", d.authed(stun.MethodConnectionBind, cid), 0)
	echoStream(t, d.data(), 3)

	cancel()
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop within 5 s with live data connections")
	}
	waitClosed(t, "client data connection", d.data())
	waitClosed(t, "peer data connection", peer.accepted(t, 0))
}

// TestTCPAllocationNoLeak checks that a TCP allocation's removal leaves no
// goroutine or socket behind while the server runs on: a bound pair, a
// Connect waiting for its bind, and a peer that connected in and waits.
func TestTCPAllocationNoLeak(t *testing.T) {
	s := startServer(t)
	time.Sleep(50 * time.Millisecond) // let the listeners' goroutines start
	g0, _ := serverGoroutines()
	f0 := openFDs(t)
	t.Run("session", func(t *testing.T) {
		c, d, _ := boundPair(t, s.addrs[relay.TCP])
		echoStream(t, d.data(), 5)
		pending := newTCPPeer(t)
		wantCode(t, "CreatePermission", c.authed(stun.MethodCreatePermission, stunPeer(pending.addr())), 0)
		c.connect(pending.addr(), 0)
		in, err := dialAsPeer(c.relayed.String())
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		if m := c.next(5 * time.Second); m == nil || m.Type.Method != stun.MethodConnectionAttempt {
			t.Fatalf("got %v, want a ConnectionAttempt", m)
		}
		// (A Refresh with lifetime 0 over TCP gets no answer: the
		// connection closes with the allocation.)
		a := tcpAllocation(t, s, net.TCPAddrFromAddrPort(c.relayed))
		s.Table().Delete(a.FiveTuple)
		waitClosed(t, "client data connection", d.data())
		waitClosed(t, "incoming peer connection", in)
		waitClosed(t, "pending peer connection", pending.accepted(t, 0))
	})
	settle(t, g0, f0)
}

// dialAsPeer connects to a relayed address from turntest.PeerIP, as a peer
// would: not from 127.0.0.1, the server's own address, where only relay
// ports may be peers (relay/self.go).
func dialAsPeer(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(turntest.PeerIP)}}
	return d.Dial("tcp4", addr)
}
