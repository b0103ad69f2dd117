package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay/proto"
	"github.com/postern/postern/relay/sniff"
)

const (
	// streamWriteTimeout bounds one write to a TCP/TLS client: a client that
	// does not read loses media instead of stalling the relay loop.
	streamWriteTimeout = 2 * time.Second
	// streamBufSize holds the largest STUN or ChannelData frame: what a
	// connection's buffer grows to when a frame needs it (proto.Framer).
	streamBufSize = proto.FramerBufferSize
	// sniffBufSize is a connection's buffer from accept on: it holds a
	// PROXY header, a usual ClientHello and every STUN request, and, reused
	// under TLS, the frames of a connection that has not allocated. 10 000
	// idle connections hold 40 MiB of it instead of 640 MiB.
	sniffBufSize = proto.FramerInitialSize
	// preAllocMaxFrame bounds the frames of a connection that has not
	// allocated: every STUN request fits (RFC 8489 caps USERNAME at 513
	// bytes and REALM, NONCE and SOFTWARE at 763 each), so before
	// authenticating nobody makes the buffer grow to 64 KiB.
	preAllocMaxFrame = sniffBufSize
)

// streamListener is one bound TCP, TLS or tcp+tls listener.
type streamListener struct {
	s       *Server
	ln      net.Listener
	kind    ListenerKind
	local   netip.AddrPort
	relayIP relayIPs
	web     *sniff.Router // where connections that are not TURN go
}

// streamSink serialises writes to one TCP/TLS client: the relay loop and
// the connection's own responses share it.
type streamSink struct {
	mu   sync.Mutex
	conn net.Conn
	// records is what the tls.Conn in conn writes to; nil for plain TCP.
	records *recordConn
	// bound is set by a successful ConnectionBind (RFC 6062 §5.4), on the
	// connection's reader goroutine, which then pipes the connection to
	// this peer connection instead of reading STUN.
	bound *peerConn
}

// writeFrames writes frames, several whole frames back to back, with one
// system call (or a few, if they outgrow scratch). To a TLS client every
// frame is sealed in a TLS record of its own, gathered in scratch: some
// clients (coturn's turnutils_uclient) take one record for one message and
// lose the rest of a record that holds two. It returns scratch for the
// caller to keep: the records never hold on to it.
func (w *streamSink) writeFrames(frames, scratch []byte) ([]byte, error) {
	if w.records == nil {
		return scratch, w.WriteToClient(frames)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil {
		return scratch, err
	}
	w.records.cork(scratch)
	var err error
	for len(frames) > 0 && err == nil {
		n := proto.StreamFrameLen(frames)
		if n == 0 || n > len(frames) {
			n = len(frames) // not a frame of ours: written as it is
		}
		_, err = w.conn.Write(frames[:n])
		frames = frames[n:]
	}
	scratch, flushErr := w.records.uncork()
	if err == nil {
		err = flushErr
	}
	return scratch, err
}

// recordConn is the connection under a TLS client's tls.Conn. Corked, it
// gathers the records the tls.Conn writes, so that a batch of frames keeps
// one record each yet leaves in one system call; uncorked it writes
// through. Its lock is the tls.Conn's own writes' (the connection's reader
// may answer a TLS KeyUpdate while the relay loop writes).
type recordConn struct {
	net.Conn
	mu   sync.Mutex
	held []byte // non-nil while corked: the records written since, in a borrowed buffer
	err  error  // a gathered write failed: the stream is broken for good
}

// Write holds b while corked (writing the held records first if b would
// not fit), else writes it through.
func (c *recordConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.held == nil {
		return c.Conn.Write(b)
	}
	if len(c.held)+len(b) > cap(c.held) {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(b) > cap(c.held) {
			return c.Conn.Write(b)
		}
	}
	c.held = append(c.held, b...)
	return len(b), nil
}

// cork makes Write gather into buf (its length is ignored; it must not be
// nil).
func (c *recordConn) cork(buf []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = buf[:0]
}

// uncork writes what was gathered and returns the buffer given to cork.
func (c *recordConn) uncork() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.flushLocked()
	buf := c.held[:0]
	c.held = nil
	return buf, err
}

func (c *recordConn) flushLocked() error {
	if c.err != nil {
		return c.err
	}
	if len(c.held) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.held)
	c.held = c.held[:0]
	if err != nil {
		// Part of a record may have left: nothing after it can be read.
		c.err = fmt.Errorf("relay: writing TLS records: %w", err)
		return c.err
	}
	return nil
}

// Close closes the connection: an allocation over TCP/TLS that ends because
// it expired or an operator kicked it takes its connection with it (a
// deleting Refresh does not: see Server.onRemove).
func (w *streamSink) Close() error { return w.conn.Close() }

// WriteToClient writes one whole frame, or fails after streamWriteTimeout.
func (w *streamSink) WriteToClient(frame []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil {
		return err
	}
	_, err := w.conn.Write(frame)
	return err
}

func (s *Server) listenStream(spec ListenSpec, relayIP relayIPs) (*streamListener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", spec.Addr)
	if err != nil {
		return nil, bindError(spec, err)
	}
	s.mu.Lock()
	s.bound = append(s.bound, BoundListener{Kind: spec.Kind, Addr: ln.Addr()})
	s.closers = append(s.closers, ln.Close)
	s.mu.Unlock()
	return &streamListener{
		s: s, ln: ln, kind: spec.Kind, relayIP: relayIP,
		local: ln.Addr().(*net.TCPAddr).AddrPort(),
		web:   s.webRouter(),
	}, nil
}

// serve accepts connections until the listener is closed. Each connection
// gets its own goroutine at once: sniffing and handshakes happen there, so
// a slow client never blocks the accept loop.
func (l *streamListener) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off briefly instead of spinning.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err := l.s.admitClient(c); err != nil {
			_ = c.Close()
			if errors.Is(err, net.ErrClosed) {
				return // shutting down
			}
			l.s.stats.drop(DropConnLimit)
			l.s.log.Debug("connection refused", "client", c.RemoteAddr().String(), "err", err)
			continue
		}
		l.s.readers.Go(func() {
			defer l.s.untrackConn(c)
			defer c.Close()
			l.handle(c)
		})
	}
}

// handle sets up one connection and serves it, as a chain of steps on
// the connection's own goroutine (package sniff), every wait before the
// connection is established bounded by Config.HandshakeTimeout:
//
//	sniff.Accept  a PROXY protocol header, from trusted sources only
//	Conn.First    the first byte, peeked: TLS, plain HTTP, or TURN/TCP
//	Conn.Hello    for TLS, the ClientHello, peeked: sniff.Router decides
//	              TURN/TLS (served here), the web backend, or the page
//
// and then serveTLS, serveWeb or serveStream.
func (l *streamListener) handle(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(l.s.cfg.HandshakeTimeout))
	sc, err := sniff.Accept(c, sniffBufSize, l.s.cfg.ProxyProtocolFrom)
	if err != nil {
		// A trusted balancer sending bad headers is misconfigured: say so.
		// Anyone else is not worth more than a debug line each.
		level := slog.LevelWarn
		if errors.Is(err, sniff.ErrUntrustedProxyHeader) {
			level = slog.LevelDebug
		}
		l.s.log.Log(context.Background(), level, "closing connection", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	first, err := sc.First()
	if err != nil {
		return // closed or silent before saying anything
	}
	switch {
	case l.kind == TLS || l.kind == TCPTLS && first == sniff.FirstTLS:
		l.serveTLS(sc)
	case l.kind == TCPTLS && first == sniff.FirstHTTP:
		l.serveWeb(sc, sc.Reader())
	default:
		_ = c.SetReadDeadline(time.Time{})
		// serveStream reuses the sniff buffer: the peeked bytes stay.
		l.serveTURN(sc, sc.Reader(), sc.Client, allocations.TCP, nil)
	}
}

// serveTLS routes a TLS connection by its ClientHello (sniff.Router):
// TURN/TLS and our ACME challenges get our handshake; a client of the web
// site is forwarded to the backend unterminated, or gets the built-in
// page over our TLS.
func (l *streamListener) serveTLS(sc *sniff.Conn) {
	rt := sniff.RouteTURN
	if hello, err := sc.Hello(); err == nil {
		rt = l.web.TLS(hello)
	} else {
		// crypto/tls will judge it; a hello we cannot inspect is
		// never sent to the web site.
		l.s.log.Debug("ClientHello not inspected", "client", sc.Client.String(), "err", err)
	}
	if rt == sniff.RouteBackend {
		l.forward(sc.Conn, sc.Reader(), sc.Client, l.local)
		return
	}
	records := &recordConn{Conn: sc}
	tc, err := l.handshake(records)
	if err != nil {
		l.s.log.Debug("TLS handshake failed", "client", sc.Client.String(), "err", err)
		return
	}
	switch alpn := tc.ConnectionState().NegotiatedProtocol; {
	case alpn == alpnACME:
		return // RFC 8737 §3: the CA closes after the handshake; so do we
	case rt == sniff.RoutePage:
		l.s.servePage(tc, tc, sc.Client)
		return
	}
	var r io.Reader = tc
	if br := sc.Detach(); br != nil {
		// The handshake consumed what was sniffed: the sniff buffer
		// becomes the TLS stream's, instead of a second one. sc has
		// stopped reading through it, or reads of br would loop through
		// the tls.Conn back into br.
		br.Reset(tc)
		r = br
	}
	_ = sc.SetReadDeadline(time.Time{})
	l.serveTURN(tc, r, sc.Client, allocations.TLS, records)
}

// serveWeb sends a plain HTTP connection to the web backend, or answers it
// with the built-in page.
func (l *streamListener) serveWeb(sc *sniff.Conn, br *bufio.Reader) {
	if l.s.cfg.Web.Backend != "" {
		l.forward(sc.Conn, br, sc.Client, l.local)
	} else {
		l.s.servePage(sc, br, sc.Client)
	}
}

// serveTURN serves conn, whose client is client, as TURN over transport,
// reading through r.
func (l *streamListener) serveTURN(conn net.Conn, r io.Reader, client netip.AddrPort, transport allocations.Transport, records *recordConn) {
	ft := allocations.FiveTuple{Client: client, Server: l.local, Transport: transport}
	l.s.serveStream(&streamSink{conn: conn, records: records}, r, ft, l.relayIP)
}

func (l *streamListener) handshake(c net.Conn) (*tls.Conn, error) {
	tc := tls.Server(c, l.s.tls)
	ctx, cancel := context.WithTimeout(context.Background(), l.s.cfg.HandshakeTimeout)
	defer cancel()
	err := tc.HandshakeContext(ctx)
	l.s.stats.tlsHandshake(err == nil)
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// serveStream reads frames from one TCP/TLS client until it goes away; the
// allocation made over the connection ends with it (RFC 8656 §3.1).
func (s *Server) serveStream(sink *streamSink, r io.Reader, ft allocations.FiveTuple, relayIP relayIPs) {
	conn := sink.conn
	// The framer reads through r as it is when it is the connection's
	// sniff buffer (no byte lost, no second buffer), and grows its buffer
	// only for a frame that needs it.
	framer := proto.NewFramer(r)
	// Until the connection allocates, its frames are small (STUN
	// requests): a larger one closes it instead of growing the buffer.
	framer.SetMaxFrame(preAllocMaxFrame)
	var req, resp, send stun.Message
	defer s.endStream(ft)
	runs := streamRuns{s: s}
	defer runs.flush()
	// allocated: the 5-tuple has an allocation now; once: it has had one.
	allocated, once := false, false
	// A connection without an allocation for IdleTimeout is closed: it
	// holds a socket and a goroutine, and TURN clients allocate at once.
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
	for {
		if !once {
			// ChannelData before any allocation is no TURN client: it is
			// what HTTP methods (GET is 0x47) look like by first byte
			// (RFC 7983). Close at once instead of waiting for a frame
			// length that was never one.
			first, err := framer.Peek(1)
			if err == nil && proto.Classify(first[0]) == proto.KindChannelData {
				if once = s.table.Get(ft) != nil; !once {
					s.log.Debug("closing connection: ChannelData before any allocation", "client", ft.Client.String())
					return
				}
				framer.SetMaxFrame(0)
			}
		}
		frame, kind, err := framer.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("closing connection", "client", ft.Client.String(), "transport", ft.Transport.String(), "err", err)
			}
			return
		}
		switch kind {
		case proto.KindChannelData:
			// Frames already buffered leave in GSO runs (datapath.go).
			runs.relay(ft, frame)
			if !framer.Buffered() {
				runs.flush()
			}
		case proto.KindSTUN:
			if isSendIndication(frame) {
				// A run keeps the client's order: a Send indication
				// joins it like ChannelData.
				s.relaySend(ft, frame, &send, runs.tx())
				if !framer.Buffered() {
					runs.flush()
				}
				continue
			}
			runs.flush() // keep the client's order
			req.Raw = append(req.Raw[:0], frame...)
			if err := req.Decode(); err != nil {
				s.log.Debug("closing connection: undecodable STUN message", "client", ft.Client.String(), "err", err)
				return
			}
			s.handleRequest(&req, &resp, ft, sink, relayIP)
			if sink.bound != nil {
				runs.flush()
				s.pipeData(sink.bound, conn, framer.Reader()) // a data connection from now on (tcprelay.go)
				return
			}
			if has := s.table.Get(ft) != nil; has != allocated {
				allocated = has
				if has {
					once = true
					_ = conn.SetReadDeadline(time.Time{}) // the allocation's lifetime governs now
					framer.SetMaxFrame(0)                 // media frames up to 64 KiB from now on
				} else {
					// Deleted by a Refresh with lifetime 0: the connection
					// stays for another Allocate, within IdleTimeout.
					_ = conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
				}
			}
		}
	}
}

// tcpAddrPort is the address of a TCP connection endpoint (IPv4-mapped
// IPv6 unmapped).
func tcpAddrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return unmapAddrPort(t.AddrPort())
	}
	return netip.AddrPort{}
}
