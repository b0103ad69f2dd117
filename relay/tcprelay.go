package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/udpio"
	"github.com/postern/postern/relay/proto"
)

// TCP allocations (RFC 6062). The relayed address of a TCP allocation is a
// listening TCP socket. The client opens a connection to a peer with
// Connect on its control connection (the one that allocated), or a peer
// connects in and the client hears of it by a ConnectionAttempt
// indication; either way the peer's connection gets a CONNECTION-ID, which
// the client names in a ConnectionBind request sent as the first request on
// a new connection to the same listener. After the success response that
// connection carries the peer's bytes as they are, both ways.
//
// This is control plane: nothing here runs on the UDP packet path, which
// sees only that Allocation.TCP is nil. The bound pair relays with two
// plain copy loops, one of them on the client data connection's own reader
// goroutine, each with one buffer for the connection's life.

const (
	// tcpBindTimeout: RFC 6062 §5.2 and §5.3: "If no ConnectionBind
	// request associated with this peer data connection is received after
	// 30 seconds, the peer data connection MUST be closed."
	tcpBindTimeout = 30 * time.Second
	// tcpConnectTimeout bounds a Connect's dial: RFC 6062 §5.2: "If the
	// connection attempt fails or times out, the server MUST return a 447
	// (Connection Timeout or Failure) error. The timeout value MUST be at
	// least 30 seconds."
	tcpConnectTimeout = 30 * time.Second
	// MaxTCPConnections caps the peer data connections of one TCP
	// allocation (being connected, waiting for their ConnectionBind, or
	// bound): each holds a socket, and a bound one two goroutines. Past
	// it a Connect gets 508 and a peer connecting in is closed.
	MaxTCPConnections = 128
	// tcpCopyBuffer is the buffer of the peer-to-client copy loop of one
	// data connection (the other direction reads through the client
	// connection's own 64 KiB reader).
	tcpCopyBuffer = 16 << 10
	// bandwidthPoll is how long a data connection over its bandwidth
	// limit waits before trying again: TCP is throttled, not dropped.
	bandwidthPoll = 5 * time.Millisecond
)

// tcpIndex finds peer data connections by CONNECTION-ID across the server:
// a ConnectionBind arrives on a new connection, which has no allocation to
// look in. Its mutex also guards every tcpRelay's conns and closed fields
// and every peerConn's mutable state: all of it changes only on Connect,
// accept, bind and close, never per byte relayed.
type tcpIndex struct {
	mu   sync.Mutex
	byID map[uint32]*peerConn // mu guards it
}

// tcpRelay is the relay state of one TCP allocation, its Allocation.TCP.
type tcpRelay struct {
	s     *Server
	a     *allocations.Allocation // set before the accept loop starts; never changes after
	ln    *net.TCPListener
	local netip.AddrPort // ln's address: Connect dials from it
	// ctx is done when the relay closes: it stops Connect dials.
	ctx    context.Context
	cancel context.CancelFunc

	// Guarded by s.tcp.mu.
	conns  map[uint32]*peerConn
	closed bool
}

// peerConn is one peer data connection and, once bound, its client data
// connection.
type peerConn struct {
	id       uint32
	relay    *tcpRelay
	peer     netip.AddrPort // unmapped
	outgoing bool           // made by Connect: RFC 6062 §5.2's 446 check is about these

	// Guarded by s.tcp.mu. conn is set once (by the dial, or at accept)
	// and client once (by ConnectionBind); after that they never change.
	conn   net.Conn    // nil while Connect dials
	client net.Conn    // the client data connection, once bound
	timer  *time.Timer // closes the connection if no ConnectionBind comes
	bound  bool
	ended  bool
}

// Addr is the relayed address's listening socket address.
func (t *tcpRelay) Addr() net.Addr { return t.ln.Addr() }

// Close ends the relay; the table calls it when the allocation is removed.
// RFC 6062 §5.5: "If the allocation associated with a data connection
// expires, the data connection MUST be closed." So do Connects in progress
// and connections waiting for their ConnectionBind.
func (t *tcpRelay) Close() error {
	t.cancel()
	err := t.ln.Close()
	t.s.tcp.mu.Lock()
	t.closed = true
	pcs := make([]*peerConn, 0, len(t.conns))
	for _, pc := range t.conns {
		pcs = append(pcs, pc)
	}
	t.s.tcp.mu.Unlock()
	for _, pc := range pcs {
		pc.end()
	}
	return err
}

// add registers a new peer data connection (conn nil while a Connect dials)
// under a fresh CONNECTION-ID. It fails when the relay is closed, holds
// MaxTCPConnections, or (for Connect) already has a connection to peer.
func (t *tcpRelay) add(peer netip.AddrPort, conn net.Conn, outgoing bool) (*peerConn, error) {
	s := t.s
	s.tcp.mu.Lock()
	defer s.tcp.mu.Unlock()
	if t.closed {
		return nil, newError(stun.CodeAllocMismatch, "Allocation Mismatch: the allocation has ended")
	}
	if outgoing {
		// RFC 6062 §5.2: "If the server is currently processing a Connect
		// request for this allocation with the same XOR-PEER-ADDRESS, it
		// MUST return a 446 (Connection Already Exists) error. If the
		// server has already successfully processed a Connect request for
		// this allocation with the same XOR-PEER-ADDRESS, and the
		// resulting client and peer data connections are either pending
		// or active, it MUST return a 446 (Connection Already Exists)
		// error."
		for _, pc := range t.conns {
			if pc.outgoing && pc.peer == peer {
				return nil, newError(446, "Connection Already Exists")
			}
		}
	}
	if len(t.conns) >= MaxTCPConnections {
		return nil, newError(stun.CodeInsufficientCapacity,
			fmt.Sprintf("Insufficient Capacity: %d peer connections on this allocation", len(t.conns)))
	}
	if s.tcp.byID == nil {
		s.tcp.byID = make(map[uint32]*peerConn)
	}
	// RFC 6062 §5.2: "The attribute's value MUST uniquely identify the
	// peer data connection." Random, so that one connection's ID says
	// nothing about another's; 0 is never used.
	var id uint32
	for id == 0 || s.tcp.byID[id] != nil {
		id = rand.Uint32()
	}
	pc := &peerConn{id: id, relay: t, peer: peer, outgoing: outgoing, conn: conn}
	if conn != nil {
		pc.timer = time.AfterFunc(s.bindTimeout(), pc.expire)
	}
	s.tcp.byID[id] = pc
	t.conns[id] = pc
	return pc, nil
}

// connected gives a Connect's peer connection its socket and starts the
// ConnectionBind timer. It fails if the connection ended meanwhile (the
// allocation went away).
func (pc *peerConn) connected(c net.Conn) error {
	s := pc.relay.s
	s.tcp.mu.Lock()
	defer s.tcp.mu.Unlock()
	if pc.ended {
		return errors.New("relay: allocation ended during Connect")
	}
	pc.conn = c
	pc.timer = time.AfterFunc(s.bindTimeout(), pc.expire)
	return nil
}

// expire closes a peer connection still unbound when its timer fires.
func (pc *peerConn) expire() {
	s := pc.relay.s
	s.tcp.mu.Lock()
	bound := pc.bound
	s.tcp.mu.Unlock()
	if !bound {
		s.log.Debug("closing peer connection: no ConnectionBind within the timeout", "id", pc.relay.a.ID,
			"peer", pc.peer.String(), "connection_id", pc.id)
		pc.end()
	}
}

// end closes the peer connection and its client data connection, if any,
// and forgets it; once. RFC 6062 §5.5: "When a client data connection is
// closed, the server MUST close the corresponding peer data connection.
// When a peer data connection is closed, the server MUST close the
// corresponding client data connection."
func (pc *peerConn) end() {
	t := pc.relay
	s := t.s
	s.tcp.mu.Lock()
	if pc.ended {
		s.tcp.mu.Unlock()
		return
	}
	pc.ended = true
	delete(s.tcp.byID, pc.id)
	delete(t.conns, pc.id)
	if pc.timer != nil {
		pc.timer.Stop()
	}
	conn, client := pc.conn, pc.client
	s.tcp.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
		s.untrackConn(conn)
	}
	if client != nil {
		_ = client.Close() // its reader goroutine untracks it
	}
}

// bindTimeout is tcpBindTimeout, or what a test set.
func (s *Server) bindTimeout() time.Duration {
	if s.cfg.tcpBindTimeout > 0 {
		return s.cfg.tcpBindTimeout
	}
	return tcpBindTimeout
}

// admitPeer registers a peer data connection for shutdown and counts it
// against MaxConns like a client connection (not against MaxConnsPerIP,
// which is about the sources of client connections).
func (s *Server) admitPeer(c net.Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stopped:
		return net.ErrClosed
	case s.cfg.MaxConns > 0 && s.clients >= s.cfg.MaxConns:
		return fmt.Errorf("%w: %d connections in total (max_conns)", errConnLimit, s.clients)
	}
	s.conns[c] = connInfo{client: true}
	s.clients++
	return nil
}

// reuseAddrPort lets a relay's listening socket and the sockets Connect
// dials from it share the relayed address: RFC 6062 §5.2: "The local
// endpoint is the relayed transport address associated with the
// allocation." Linux lets a connecting socket bind a listener's port only
// when both set SO_REUSEPORT; the port pool keeps two allocations off one
// port (PortPool.ListenTCP).
func reuseAddrPort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	return udpio.ReusePort(network, address, c)
}

// allocateTCP implements RFC 6062 §5.1, the TCP branch of allocate.
func (r *request) allocateTCP(id auth.Identity) error {
	// RFC 6062 §5.1: "2. If the client connection transport is not TCP or
	// TLS, the server MUST reject the request with a 400 (Bad Request)
	// error."
	if r.ft.Transport == allocations.UDP {
		return newError(stun.CodeBadRequest, "Bad Request: TCP relaying is allocated over TCP or TLS, not UDP (RFC 6062)")
	}
	// "3. If the request contains the DONT-FRAGMENT, EVEN-PORT, or
	// RESERVATION-TOKEN attribute, the server MUST reject the request with
	// a 400 (Bad Request) error."
	for _, attr := range []stun.AttrType{stun.AttrDontFragment, stun.AttrEvenPort, stun.AttrReservationToken} {
		if r.req.Contains(attr) {
			return newError(stun.CodeBadRequest, "Bad Request: "+attr.String()+" with REQUESTED-TRANSPORT TCP")
		}
	}
	if r.req.Contains(proto.AttrAdditionalAddressFamily) {
		// RFC 6062 knows one relayed address per allocation; a dual
		// allocation (RFC 8656 §7.2) is UDP only.
		return newError(stun.CodeBadRequest, "Bad Request: ADDITIONAL-ADDRESS-FAMILY with REQUESTED-TRANSPORT TCP")
	}
	plan, err := r.planFamilies(false, false) // REQUESTED-ADDRESS-FAMILY as for UDP: 440 (handler.go)
	if err != nil {
		return err
	}
	relayIP := plan.primary
	lifetime := r.lifetime()
	// "4. A TCP relayed transport address MUST be allocated instead of a
	// UDP one."
	ln, err := r.s.ports.ListenTCP(relayIP, &net.ListenConfig{Control: reuseAddrPort})
	if err != nil {
		return err
	}
	local := unmapAddrPort(ln.Addr().(*net.TCPAddr).AddrPort())
	advertised := local
	if ext := r.s.cfg.ExternalIP.Public(local.Addr()); ext.IsValid() {
		advertised = netip.AddrPortFrom(ext, local.Port())
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &tcpRelay{s: r.s, ln: ln, local: local, ctx: ctx, cancel: cancel, conns: make(map[uint32]*peerConn)}
	a := &allocations.Allocation{
		FiveTuple:     r.ft,
		Username:      id.Username,
		User:          id.User,
		Key:           id.Key,
		Relayed:       advertised,
		TCP:           t,
		Sink:          r.sink,
		Created:       time.Now(),
		TransactionID: r.req.TransactionID,
	}
	t.a = a
	if err := r.create(a, lifetime); err != nil {
		cancel()
		r.s.ports.CloseTCP(ln)
		return err
	}
	r.s.stats.allocationCreated(r.ft)
	// "If all checks pass, the server MUST start accepting incoming TCP
	// connections on the relayed transport address." The loop ends when
	// the table closes the listener with the allocation.
	r.s.relays.Go(t.serve)
	r.s.log.Info("allocation created", "id", a.ID, "user", id.Username, "client", r.ft.Client.String(),
		"transport", r.ft.Transport.String(), "relayed", "tcp "+advertised.String(), "lifetime", lifetime)
	// "5. The RESERVATION-TOKEN attribute MUST NOT be present in the
	// success response."
	r.allocateSuccess(a, lifetime, id.Key, nil, proto.AddressErrorCode{})
	return nil
}

// serve accepts peers' connections to the relayed address until the
// listener closes.
func (t *tcpRelay) serve() {
	for {
		c, err := t.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off instead of spinning.
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		t.incoming(c)
	}
}

// incoming implements RFC 6062 §5.3 for one accepted connection.
func (t *tcpRelay) incoming(c *net.TCPConn) {
	s, a := t.s, t.a
	peer := tcpAddrPort(c.RemoteAddr())
	// RFC 6062 §5.3: "If no permission for this peer has been installed
	// for this allocation, the server MUST close the connection with the
	// peer immediately after it has been accepted." The peer policy
	// applies as to every relayed packet.
	switch {
	case !a.Permitted(peer.Addr(), time.Now()):
		s.stats.drop(DropNoPermission)
		_ = c.Close()
		return
	case !s.policy().Allowed(peer.Addr()):
		s.stats.drop(DropPolicy)
		_ = c.Close()
		return
	}
	if err := s.admitPeer(c); err != nil {
		s.stats.drop(DropConnLimit)
		_ = c.Close()
		return
	}
	pc, err := t.add(peer, c, false)
	if err != nil {
		s.stats.drop(DropConnLimit)
		_ = c.Close()
		s.untrackConn(c)
		return
	}
	// "Otherwise, the server sends a ConnectionAttempt indication to the
	// client over the control connection. The indication MUST include an
	// XOR-PEER-ADDRESS attribute containing the peer's transport address,
	// as well as a CONNECTION-ID attribute uniquely identifying the peer
	// data connection."
	m := new(stun.Message)
	m.Type = stun.NewType(stun.MethodConnectionAttempt, stun.ClassIndication)
	m.TransactionID = proto.NewTransactionID(newRNG())
	m.WriteHeader()
	_ = proto.AddXORAddress(m, stun.AttrXORPeerAddress, peer)
	_ = proto.ConnectionID(pc.id).AddTo(m)
	_ = stun.Fingerprint.AddTo(m)
	if err := a.Sink.WriteToClient(m.Raw); err != nil {
		s.log.Debug("write ConnectionAttempt", "client", a.FiveTuple.Client.String(), "err", err)
		pc.end()
		return
	}
	s.log.Debug("peer connected to a TCP allocation", "id", a.ID, "peer", peer.String(), "connection_id", pc.id)
}

// tcpRelayOf returns the TCP allocation of this 5-tuple, checked as owned
// returns it.
func (r *request) tcpRelayOf(id auth.Identity) (*tcpRelay, error) {
	a, err := r.owned(id)
	if err != nil {
		return nil, err
	}
	t, ok := a.TCP.(*tcpRelay)
	if !ok {
		return nil, newError(stun.CodeBadRequest, "Bad Request: Connect needs a TCP allocation (RFC 6062)")
	}
	return t, nil
}

// connect implements RFC 6062 §5.2. The checks answer at once; the dial
// answers from its own goroutine, so a slow peer delays only this Connect,
// never the control connection's other requests.
func (r *request) connect(id auth.Identity) error {
	// "If the request is received on a TCP connection for which no
	// allocation exists, the server MUST return a 437 (Allocation
	// Mismatch) error."
	t, err := r.tcpRelayOf(id)
	if err != nil {
		return err
	}
	a := t.a
	// "If the request does not contain an XOR-PEER-ADDRESS attribute, or
	// if such attribute is invalid, the server MUST return a 400 (Bad
	// Request) error."
	peer, err := proto.GetXORAddress(r.req, stun.AttrXORPeerAddress)
	if err != nil || peer.Port() == 0 || peer.Addr().IsUnspecified() {
		return newError(stun.CodeBadRequest, "Bad Request: missing or invalid XOR-PEER-ADDRESS")
	}
	// "If the new connection is forbidden by local policy, the server MUST
	// reject the request with a 403 (Forbidden) error." Local policy is
	// the peer policy and, as for UDP relaying, a permission.
	if err := r.checkPeer(a, peer); err != nil {
		return err
	}
	if !a.Permitted(peer.Addr(), time.Now()) {
		return newError(stun.CodeForbidden, "Forbidden: no permission for this peer (CreatePermission first)")
	}
	pc, err := t.add(peer, nil, true)
	if err != nil {
		return err
	}
	// The answer is written later: it gets its own message, since r's
	// are the connection's scratch, reused by the next request.
	later := &request{s: r.s, req: &stun.Message{Type: r.req.Type, TransactionID: r.req.TransactionID},
		resp: new(stun.Message), ft: r.ft, sink: r.sink, relayIP: r.relayIP}
	key := id.Key
	r.s.relays.Go(func() { t.dial(pc, later, key) })
	return nil
}

// dial makes a Connect's outgoing connection and answers the Connect.
func (t *tcpRelay) dial(pc *peerConn, r *request, key []byte) {
	s := t.s
	ctx, cancel := context.WithTimeout(t.ctx, tcpConnectTimeout)
	defer cancel()
	network := "tcp6"
	if t.local.Addr().Is4() {
		network = "tcp4"
	}
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(t.local), Control: reuseAddrPort}
	c, err := d.DialContext(ctx, network, pc.peer.String())
	answer := newError(447, "Connection Timeout or Failure")
	if err == nil {
		if err = s.admitPeer(c); err != nil {
			_ = c.Close()
			answer = newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: connection limit reached")
		} else if err = pc.connected(c); err != nil {
			_ = c.Close()
			s.untrackConn(c)
		}
	}
	if err != nil {
		pc.end()
		s.log.Debug("Connect failed", "id", t.a.ID, "peer", pc.peer.String(), "err", err)
		r.fail(answer, key)
		return
	}
	// "The server MUST include the CONNECTION-ID attribute in the Connect
	// success response."
	r.start(stun.ClassSuccessResponse)
	_ = proto.ConnectionID(pc.id).AddTo(r.resp)
	r.send(key)
	s.log.Debug("connected to peer for a TCP allocation", "id", t.a.ID, "peer", pc.peer.String(), "connection_id", pc.id)
}

// connectionBind implements RFC 6062 §5.4. On success the connection is
// handed to its reader (serveStream) through the sink's bound field.
func (r *request) connectionBind(id auth.Identity) error {
	// "If the client connection transport is not TCP or TLS, the server
	// MUST return a 400 (Bad Request) error."
	sink, ok := r.sink.(*streamSink)
	if !ok || r.ft.Transport == allocations.UDP {
		return newError(stun.CodeBadRequest, "Bad Request: ConnectionBind goes over TCP or TLS")
	}
	if r.s.table.Get(r.ft) != nil {
		return newError(stun.CodeBadRequest, "Bad Request: ConnectionBind goes on a new connection, not the control connection")
	}
	// "If the request does not contain the CONNECTION-ID attribute, or if
	// this attribute does not refer to an existing pending connection, the
	// server MUST return a 400 (Bad Request) error."
	var cid proto.ConnectionID
	if err := cid.GetFrom(r.req); err != nil {
		return newError(stun.CodeBadRequest, "Bad Request: missing or malformed CONNECTION-ID")
	}
	pc, err := r.s.bindPeer(uint32(cid), id.Username, sink.conn)
	if err != nil {
		return err
	}
	r.start(stun.ClassSuccessResponse)
	r.send(id.Key)
	sink.bound = pc
	return nil
}

// bindPeer marks the pending peer connection id bound to client, for the
// user who owns its allocation.
func (s *Server) bindPeer(id uint32, username string, client net.Conn) (*peerConn, error) {
	s.tcp.mu.Lock()
	defer s.tcp.mu.Unlock()
	pc := s.tcp.byID[id]
	if pc == nil || pc.ended || pc.bound || pc.conn == nil {
		return nil, newError(stun.CodeBadRequest, "Bad Request: CONNECTION-ID names no pending connection")
	}
	if pc.relay.a.Username != username {
		return nil, newError(stun.CodeWrongCredentials, "Wrong Credentials: the connection belongs to another username")
	}
	pc.bound = true
	pc.client = client
	pc.timer.Stop()
	return pc, nil
}

// pipeData relays a bound pair until either side closes, on the client
// data connection's reader goroutine (client to peer, reading through br,
// which holds what the client sent after its ConnectionBind) and one more
// (peer to client). RFC 6062 §5.4: "Data received on it MUST be sent as-is
// to the associated peer data connection. Data received on the associated
// peer data connection MUST be sent as-is on this client data connection.
// This includes data that was received after the associated Connect or
// request was successfully processed and before this ConnectionBind
// request was received." (The kernel buffered that data: the peer
// connection is not read before the bind.)
func (s *Server) pipeData(pc *peerConn, client net.Conn, br *bufio.Reader) {
	defer pc.end()
	_ = client.SetDeadline(time.Time{}) // the allocation's lifetime governs now
	s.relays.Go(func() {
		defer pc.end()
		s.copyToClient(pc, client)
	})
	s.copyToPeer(pc, br)
}

// copyToPeer copies what the client sends to the peer, straight out of
// br's buffer.
func (s *Server) copyToPeer(pc *peerConn, br *bufio.Reader) {
	a := pc.relay.a
	var wait *time.Timer
	for {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				return
			}
		}
		// At most tcpCopyBuffer at a time: a bandwidth limiter's burst
		// (64 KiB at least) must hold one chunk.
		b, _ := br.Peek(min(br.Buffered(), tcpCopyBuffer))
		if !s.streamAllowed(a, pc, b, a.AllowToPeer, &wait) {
			return
		}
		if _, err := pc.conn.Write(b); err != nil {
			return
		}
		a.ToPeer.Add(len(b))
		_, _ = br.Discard(len(b))
	}
}

// copyToClient copies what the peer sends to the client.
func (s *Server) copyToClient(pc *peerConn, client net.Conn) {
	a := pc.relay.a
	buf := make([]byte, tcpCopyBuffer)
	var wait *time.Timer
	for {
		n, err := pc.conn.Read(buf)
		if n > 0 {
			if !s.streamAllowed(a, pc, buf[:n], a.AllowToClient, &wait) {
				return
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
			a.ToClient.Add(n)
		}
		if err != nil {
			return
		}
	}
}

// streamAllowed applies to b what the packet path applies to a datagram:
// the peer policy (which a reload may have narrowed), and the bandwidth
// limits, which on a stream delay the copy instead of dropping. False:
// stop relaying.
func (s *Server) streamAllowed(a *allocations.Allocation, pc *peerConn, b []byte,
	allow func(int, int64) bool, wait **time.Timer) bool {
	if !s.policy().Allowed(pc.peer.Addr()) {
		s.stats.drop(DropPolicy)
		return false
	}
	for !allow(len(b), s.mono(time.Now())) {
		if *wait == nil {
			*wait = time.NewTimer(bandwidthPoll)
		} else {
			(*wait).Reset(bandwidthPoll)
		}
		select {
		case <-a.Done():
			return false
		case <-(*wait).C:
		}
	}
	return true
}
