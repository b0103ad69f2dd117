package relay

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/pires/go-proxyproto"
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
}

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
	_ = c.SetReadDeadline(time.Time{})
	l.s.log.Debug("forwarding to web backend", "client", client.String(), "backend", l.s.cfg.Web.Backend)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(b, c)
	}()
	pipe(c, b)
	<-done
}

// pipe copies src to dst. At src's EOF it half-closes dst, so the other
// direction can finish; on an error it closes both, which ends the other
// direction too.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
	}
	_ = dst.Close()
	_ = src.Close()
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
	case *peekedConn:
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
func (s *Server) webRouter() *webRouter {
	w := &webRouter{backend: s.cfg.Web.Backend != ""}
	for _, h := range s.cfg.Web.TURNHosts {
		w.turnHosts = append(w.turnHosts, normalizeHost(h))
	}
	if s.cfg.ACME != nil {
		for _, d := range s.cfg.ACME.Domains {
			w.acmeHosts = append(w.acmeHosts, normalizeHost(d))
		}
		// The names we get certificates for are the names TURN clients
		// use, unless the operator listed others.
		if len(w.turnHosts) == 0 {
			w.turnHosts = w.acmeHosts
		}
	}
	return w
}
