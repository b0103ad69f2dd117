package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay/proto"
)

const (
	// handshakeTimeout bounds the first byte of a tcp+tls connection and
	// the TLS handshake, so a silent client cannot hold a goroutine forever.
	handshakeTimeout = 10 * time.Second
	// streamWriteTimeout bounds one write to a TCP/TLS client: a client that
	// does not read loses media instead of stalling the relay loop.
	streamWriteTimeout = 2 * time.Second
	// streamBufSize holds the largest STUN or ChannelData frame, so the
	// framer can use a reader of this size as it is.
	streamBufSize = 64<<10 + 64
)

// streamListener is one bound TCP, TLS or tcp+tls listener.
type streamListener struct {
	s       *Server
	ln      net.Listener
	kind    ListenerKind
	local   netip.AddrPort
	relayIP netip.Addr
}

// streamSink serialises writes to one TCP/TLS client: the relay loop and
// the connection's own responses share it.
type streamSink struct {
	mu   sync.Mutex
	conn net.Conn
}

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

func (s *Server) listenStream(spec ListenSpec, relayIP netip.Addr) (*streamListener, error) {
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
		if !l.s.trackConn(c) {
			_ = c.Close()
			return
		}
		l.s.readers.Go(func() {
			defer l.s.untrackConn(c)
			defer c.Close()
			l.handle(c)
		})
	}
}

// handle sets up one connection (TLS if needed) and serves it.
func (l *streamListener) handle(c net.Conn) {
	transport := allocations.TCP
	var r io.Reader = c
	conn := c
	switch l.kind {
	case TLS:
		tc, err := l.handshake(c)
		if err != nil {
			l.s.log.Debug("TLS handshake failed", "client", c.RemoteAddr().String(), "err", err)
			return
		}
		conn, r, transport = tc, tc, allocations.TLS
	case TCPTLS:
		// RFC 7983 first-byte rule: 0x16 is a TLS handshake record, 0-3 a
		// STUN message, 0x40-0x4F ChannelData.
		br := bufio.NewReaderSize(c, streamBufSize)
		_ = c.SetReadDeadline(time.Now().Add(handshakeTimeout))
		first, err := br.Peek(1)
		_ = c.SetReadDeadline(time.Time{})
		if err != nil {
			return
		}
		pc := &peekedConn{Conn: c, r: br}
		if proto.Classify(first[0]) == proto.KindTLS {
			tc, err := l.handshake(pc)
			if err != nil {
				l.s.log.Debug("TLS handshake failed", "client", c.RemoteAddr().String(), "err", err)
				return
			}
			conn, r, transport = tc, tc, allocations.TLS
		} else {
			conn, r = pc, br // serveStream reuses br: the peeked byte stays
		}
	}
	client := unmapAddrPort(c.RemoteAddr().(*net.TCPAddr).AddrPort())
	ft := allocations.FiveTuple{Client: client, Server: l.local, Transport: transport}
	l.s.serveStream(conn, r, ft, l.relayIP)
}

func (l *streamListener) handshake(c net.Conn) (*tls.Conn, error) {
	tc := tls.Server(c, l.s.tls)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// serveStream reads frames from one TCP/TLS client until it goes away; the
// allocation made over the connection ends with it (RFC 8656 §3.1).
func (s *Server) serveStream(conn net.Conn, r io.Reader, ft allocations.FiveTuple, relayIP netip.Addr) {
	sink := &streamSink{conn: conn}
	br := bufio.NewReaderSize(r, streamBufSize)
	framer := proto.NewFramer(br)
	var req, resp, send stun.Message
	defer s.table.Delete(ft)
	allocated := false
	for {
		if !allocated {
			// ChannelData before any allocation is no TURN client: it is
			// what HTTP methods (GET is 0x47) look like by first byte
			// (RFC 7983). Close at once instead of waiting for a frame
			// length that was never one.
			first, err := br.Peek(1)
			if err == nil && proto.Classify(first[0]) == proto.KindChannelData {
				if allocated = s.table.Get(ft) != nil; !allocated {
					s.log.Debug("closing connection: ChannelData before any allocation", "client", ft.Client.String())
					return
				}
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
			s.relayChannelData(ft, frame)
		case proto.KindSTUN:
			if isSendIndication(frame) {
				s.relaySend(ft, frame, &send)
				continue
			}
			req.Raw = append(req.Raw[:0], frame...)
			if err := req.Decode(); err != nil {
				s.log.Debug("closing connection: undecodable STUN message", "client", ft.Client.String(), "err", err)
				return
			}
			s.handleRequest(&req, &resp, ft, sink, relayIP)
		}
	}
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }
