package relay

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/postern/postern/relay/sniff"
)

// WebConfig shares TLS listeners (typically port 443) with a web site.
// The zero value shares nothing: every connection is TURN, and a browser
// that wanders in gets a short built-in page.
type WebConfig struct {
	// Backend is the HOST:PORT of the web site that also answers on this
	// port. Connections that are not TURN are forwarded to it byte for byte:
	// TLS is passed through, not terminated, so the site keeps its own
	// certificate. Empty: no backend; such connections get a built-in page.
	Backend string
	// BackendProxyProtocol prefixes each forwarded connection with a PROXY
	// protocol v2 header carrying the client's address, so the web site
	// logs real clients instead of this relay (nginx: listen ... proxy_protocol).
	BackendProxyProtocol bool
	// TURNHosts are the TLS server names (SNI) of this TURN server. A TLS
	// client asking for another name goes to the backend. Empty: every name
	// is a TURN name (or, with ACME, the ACME domains are).
	TURNHosts []string
	// IdleTimeout closes a forwarded connection when no byte has passed
	// either way for this long (DefaultWebIdleTimeout when zero).
	IdleTimeout time.Duration
	// MaxConns caps forwarded connections: they count against it instead
	// of Config.MaxConns once routed to the backend, so web clients can
	// never lock TURN clients out (DefaultWebMaxConns when zero; negative:
	// no cap).
	MaxConns int
	// Page, when set, answers the HTTP/1 requests of visitors that are not
	// TURN when there is no Backend, instead of the short built-in text:
	// the self-test page (package selftest). One request per connection;
	// its answer is bounded to 256 KiB.
	Page http.Handler
}

// Defaults of WebConfig.
const (
	// DefaultWebIdleTimeout outlasts the keep-alive of common web servers
	// (nginx: 75 s), which close idle connections themselves.
	DefaultWebIdleTimeout = 2 * time.Minute
	// DefaultWebMaxConns: forwarded connections hold about 40 KiB each
	// (two 16 KiB copy buffers, two goroutines), 40 MiB for 1024.
	DefaultWebMaxConns = 1024
)

// Timeouts of the web side of a shared port.
const (
	// backendDialTimeout bounds connecting to the web backend.
	backendDialTimeout = 5 * time.Second
	// pageTimeout bounds a whole exchange with the built-in page.
	pageTimeout = 10 * time.Second
	// lingerTimeout bounds the wait for the client to finish after the page.
	lingerTimeout = time.Second
	// maxPageRequest bounds the request headers read before answering.
	maxPageRequest = 16 << 10
	// passthroughLinger is how long a forwarded connection stays once one
	// side has finished (or the idle timeout, if shorter), renewed by the
	// bytes the other side still sends; then both are closed.
	passthroughLinger = 5 * time.Second
	// passthroughBufSize is the copy buffer of each direction.
	passthroughBufSize = 16 << 10
)

// ValidateBackend checks a web backend address, for configuration errors
// that name the fix.
func ValidateBackend(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("web backend %q: %w: write HOST:PORT, e.g. 127.0.0.1:8443 (IPv6 in brackets)", addr, err)
	}
	if host == "" {
		return fmt.Errorf("web backend %q: no host: write HOST:PORT, e.g. 127.0.0.1:8443", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("web backend %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// forward connects the client to the web backend and copies bytes both
// ways until both sides are done. br holds what was already read from c
// (a peeked ClientHello or request line); it is sent first, unchanged.
// client and local are the addresses the PROXY header carries.
func (l *streamListener) forward(c net.Conn, br *bufio.Reader, client, local netip.AddrPort) {
	if err := l.s.admitPassthrough(c); err != nil {
		l.s.stats.drop(DropConnLimit)
		l.s.log.Debug("web connection refused", "client", client.String(), "err", err)
		return
	}
	d := net.Dialer{Timeout: backendDialTimeout}
	b, err := d.Dial("tcp", l.s.cfg.Web.Backend)
	if err != nil {
		l.s.log.Warn("web backend unreachable: closing the client's connection; check [web] backend (--web-backend)",
			"backend", l.s.cfg.Web.Backend, "client", client.String(), "err", err)
		return
	}
	if !l.s.trackConn(b) { // shutting down
		_ = b.Close()
		return
	}
	defer l.s.untrackConn(b)
	defer b.Close()

	if l.s.cfg.Web.BackendProxyProtocol {
		h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(client), net.TCPAddrFromAddrPort(local))
		if _, err := h.WriteTo(b); err != nil {
			l.s.log.Debug("web backend: writing PROXY header", "client", client.String(), "err", err)
			return
		}
	}
	// What was peeked goes first; after that the client's socket is read
	// directly, so the kernel can splice TCP to TCP.
	if n := br.Buffered(); n > 0 {
		peeked, _ := br.Peek(n)
		if _, err := b.Write(peeked); err != nil {
			l.s.log.Debug("web backend: writing peeked bytes", "client", client.String(), "err", err)
			return
		}
	}
	l.s.log.Debug("forwarding to web backend", "client", client.String(), "backend", l.s.cfg.Web.Backend)
	p := newPassthrough(l.s.cfg.Web.IdleTimeout)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pipe(b, c)
	}()
	p.pipe(c, b)
	<-done
}

// passthrough is one forwarded connection's two directions. Neither may
// hold its slot forever: the connection is closed when no byte has passed
// either way for idle, and once one side has finished (EOF: the other is
// half-closed so it can finish too), the other gets linger, renewed by
// its traffic, before both are closed.
type passthrough struct {
	idle, linger time.Duration
	last         atomic.Int64 // unix nanoseconds of the last byte either way
	ended        atomic.Bool  // one direction has finished
}

func newPassthrough(idle time.Duration) *passthrough {
	p := &passthrough{idle: idle, linger: min(passthroughLinger, idle)}
	p.last.Store(time.Now().UnixNano())
	return p
}

// limit is how long a read may wait now.
func (p *passthrough) limit() time.Duration {
	if p.ended.Load() {
		return p.linger
	}
	return p.idle
}

// pipe copies src to dst. At src's EOF it half-closes dst and shortens
// the other direction's wait (which reads dst) to linger; on an error or
// a timeout it closes both, which ends the other direction too.
func (p *passthrough) pipe(dst, src net.Conn) {
	if err := p.copy(dst, src); err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			p.ended.Store(true)
			_ = dst.SetReadDeadline(time.Now().Add(p.linger))
			return
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// copy copies src to dst until src's EOF (nil) or an error. A read that
// times out ends it only if the other direction has been idle as long.
func (p *passthrough) copy(dst, src net.Conn) error {
	buf := make([]byte, passthroughBufSize)
	for {
		limit := p.limit()
		_ = src.SetReadDeadline(time.Now().Add(limit))
		n, err := src.Read(buf)
		if n > 0 {
			p.last.Store(time.Now().UnixNano())
			_ = dst.SetWriteDeadline(time.Now().Add(p.idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, p.last.Load())) < p.limit():
			// The other direction carried bytes meanwhile: not idle.
		default:
			return err
		}
	}
}

// pageBody is what the built-in page says.
const pageBody = "This is a Postern STUN/TURN relay (RFC 8656) for WebRTC.\n" +
	"It relays media for video calls; there is no web site here.\n"

// servePage answers one HTTP/1 request on conn with the built-in page and
// returns, after which the caller closes the connection. A client that
// sends nothing within pageTimeout is dropped: never a hang.
func (s *Server) servePage(conn net.Conn, r io.Reader, client netip.AddrPort) {
	_ = conn.SetDeadline(time.Now().Add(pageTimeout))
	req, err := http.ReadRequest(bufio.NewReader(io.LimitReader(r, maxPageRequest)))
	if err != nil {
		s.log.Debug("built-in page: unreadable request", "client", client.String(), "err", err)
		return
	}
	if s.cfg.Web.Page != nil {
		if err := s.servePageHandler(conn, req, client); err != nil {
			s.log.Debug("built-in page: write", "client", client.String(), "err", err)
			return
		}
		s.lingerPage(conn, r)
		return
	}
	_ = req.Body.Close()
	body := pageBody
	if req.Method == http.MethodHead {
		body = ""
	}
	resp := "HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(pageBody)) + "\r\n" +
		"Cache-Control: no-store\r\n" +
		"Connection: close\r\n\r\n" + body
	if _, err := io.WriteString(conn, resp); err != nil {
		s.log.Debug("built-in page: write", "client", client.String(), "err", err)
		return
	}
	s.lingerPage(conn, r)
}

// lingerPage half-closes conn after a page and drains what the client
// still sends.
func (s *Server) lingerPage(conn net.Conn, r io.Reader) {
	// A TLS close_notify (or a TCP FIN) tells the client the response is
	// complete before the connection goes away.
	var cw interface{ CloseWrite() error }
	if asCloseWriter(conn, &cw) {
		_ = cw.CloseWrite()
	}
	// Linger briefly, reading what the client still sends: closing with
	// unread data makes the kernel answer with a reset, which can destroy
	// the response before the client reads it.
	_ = conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(r, maxPageRequest))
}

// asCloseWriter finds a CloseWrite method on conn or, for a connection
// whose first bytes were peeked, on the connection underneath.
func asCloseWriter(conn net.Conn, cw *interface{ CloseWrite() error }) bool {
	switch c := conn.(type) {
	case *tls.Conn:
		*cw = c
		return true
	case *sniff.Conn:
		if w, ok := c.Conn.(interface{ CloseWrite() error }); ok {
			*cw = w
			return true
		}
	case interface{ CloseWrite() error }:
		*cw = c
		return true
	}
	return false
}

// webRouter builds the routing rules of the server's stream listeners.
func (s *Server) webRouter() *sniff.Router {
	w := &sniff.Router{Backend: s.cfg.Web.Backend != ""}
	for _, h := range s.cfg.Web.TURNHosts {
		w.TURNHosts = append(w.TURNHosts, sniff.NormalizeHost(h))
	}
	if s.cfg.ACME != nil {
		for _, d := range s.cfg.ACME.Domains {
			w.ACMEHosts = append(w.ACMEHosts, sniff.NormalizeHost(d))
		}
		// The names we get certificates for are the names TURN clients
		// use, unless the operator listed others.
		if len(w.TURNHosts) == 0 {
			w.TURNHosts = w.ACMEHosts
		}
	}
	return w
}

// admitPassthrough moves client connection c, routed to the web backend,
// from Config.MaxConns to WebConfig.MaxConns (it stays counted against
// MaxConnsPerIP), or returns errConnLimit when the web cap is reached and
// the caller closes it.
func (s *Server) admitPassthrough(c net.Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.conns[c]
	switch {
	case !ok:
		return net.ErrClosed
	case info.web:
		return nil
	case s.cfg.Web.MaxConns > 0 && s.webConns >= s.cfg.Web.MaxConns:
		return fmt.Errorf("%w: %d web connections (web.max_conns)", errConnLimit, s.webConns)
	}
	if info.client {
		info.client = false
		s.clients--
	}
	info.web = true
	s.webConns++
	s.conns[c] = info
	return nil
}
