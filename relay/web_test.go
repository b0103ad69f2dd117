package relay_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/pires/go-proxyproto"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

func withWeb(w relay.WebConfig) serverOption { return func(c *relay.Config) { c.Web = w } }

func withProxyFrom(prefixes ...string) serverOption {
	return func(c *relay.Config) {
		for _, p := range prefixes {
			c.ProxyProtocolFrom = append(c.ProxyProtocolFrom, netip.MustParsePrefix(p))
		}
	}
}

// backendVisit is what the fake web backend saw of one connection.
type backendVisit struct {
	proxySource string // from the PROXY header; "" without one
	tls         bool
	serverName  string
	path        string
}

// webBackend is a fake web site: it reads a PROXY v2 header, terminates TLS
// with its own certificate (or takes plain HTTP), and answers every request
// with "backend:PATH".
type webBackend struct {
	addr   string
	roots  *x509.CertPool // trusts the backend's certificate, not Postern's
	visits chan backendVisit
	conns  atomic.Int32 // connections accepted
}

func startWebBackend(t *testing.T) *webBackend {
	t.Helper()
	cert, err := relay.SelfSignedCertificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	b := &webBackend{addr: ln.Addr().String(), roots: roots, visits: make(chan backendVisit, 16)}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			go b.serve(c, conf)
		}
	}()
	return b
}

func (b *webBackend) serve(c net.Conn, conf *tls.Config) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var v backendVisit
	br := bufio.NewReader(c)
	if h, err := proxyproto.Read(br); err == nil {
		v.proxySource = h.SourceAddr.String()
	}
	var conn io.ReadWriter = struct {
		io.Reader
		io.Writer
	}{br, c}
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	if first[0] == 0x16 {
		tc := tls.Server(&bufConn{Conn: c, r: br}, conf)
		if err := tc.Handshake(); err != nil {
			return
		}
		v.tls, v.serverName = true, tc.ConnectionState().ServerName
		conn = tc
		br = bufio.NewReader(tc)
	}
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	v.path = req.URL.Path
	b.visits <- v
	body := "backend:" + req.URL.Path
	fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// next returns the backend's next visit.
func (b *webBackend) next(t *testing.T) backendVisit {
	t.Helper()
	select {
	case v := <-b.visits:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("the web backend saw no request")
		return backendVisit{}
	}
}

// bufConn is a connection whose reads go through r.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// httpGet sends a GET for path on conn and returns the response body.
func httpGet(t *testing.T, conn net.Conn, path string) (*http.Response, string) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: example\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(body)
}

// allocateOver runs a TURN client over conn (a stream already set up) and
// allocates.
func allocateOver(t *testing.T, conn net.Conn, addr string) net.PacketConn {
	t.Helper()
	t.Cleanup(func() { _ = conn.Close() })
	client := newClient(t, turn.NewSTUNConn(conn), addr, testUser, testPassword)
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	t.Cleanup(func() { _ = relayConn.Close() })
	return relayConn
}

func dialTLS(t *testing.T, addr string, conf *tls.Config) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		t.Fatalf("TLS dial %s (SNI %q, ALPN %q): %v", addr, conf.ServerName, conf.NextProtos, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestSharedPort puts TURN/TLS, TURN/TCP, HTTPS and plain HTTP on one
// tcp+tls port and checks that each reaches the right place, and that the
// web backend learns each client's address from a PROXY v2 header.
func TestSharedPort(t *testing.T) {
	backend := startWebBackend(t)
	s := startServer(t, withWeb(relay.WebConfig{
		Backend:              backend.addr,
		BackendProxyProtocol: true,
		TURNHosts:            []string{"turn.example.org"},
	}))
	addr := s.addrs[relay.TCPTLS]

	t.Run("TURN over TLS", func(t *testing.T) {
		c := dialTLS(t, addr, &tls.Config{ServerName: "turn.example.org", InsecureSkipVerify: true}) //nolint:gosec // Postern's self-signed test certificate
		relayConn := allocateOver(t, c, addr)
		roundTrip(t, relayConn, turntest.EchoPeer(t).LocalAddr(), 3)
	})
	t.Run("TURN over TLS without SNI", func(t *testing.T) {
		c := dialTLS(t, addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // Postern's self-signed test certificate
		allocateOver(t, c, addr)
	})
	t.Run("TURN over TCP", func(t *testing.T) {
		relayConn := allocateOver(t, dialTCP(t, addr), addr)
		roundTrip(t, relayConn, turntest.EchoPeer(t).LocalAddr(), 3)
	})
	t.Run("HTTPS for another name", func(t *testing.T) {
		// The backend's own certificate verifies: TLS was passed through.
		c := dialTLS(t, addr, &tls.Config{ServerName: "localhost", RootCAs: backend.roots, NextProtos: []string{"h2", "http/1.1"}})
		resp, body := httpGet(t, c, "/other-name")
		if resp.StatusCode != 200 || body != "backend:/other-name" {
			t.Fatalf("got %d %q, want the backend's answer", resp.StatusCode, body)
		}
		v := backend.next(t)
		if !v.tls || v.serverName != "localhost" || v.proxySource != c.LocalAddr().String() {
			t.Errorf("backend saw %+v, want TLS for localhost from %v", v, c.LocalAddr())
		}
	})
	t.Run("browser for the TURN name", func(t *testing.T) {
		// Right name, but ALPN says HTTP: the web site's business.
		c := dialTLS(t, addr, &tls.Config{ServerName: "turn.example.org", InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // the backend's certificate is for localhost
		_, body := httpGet(t, c, "/turn-name")
		if body != "backend:/turn-name" {
			t.Fatalf("got %q, want the backend's answer", body)
		}
		if v := backend.next(t); v.serverName != "turn.example.org" || v.proxySource != c.LocalAddr().String() {
			t.Errorf("backend saw %+v", v)
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		c := dialTCP(t, addr)
		_, body := httpGet(t, c, "/plain")
		if body != "backend:/plain" {
			t.Fatalf("got %q, want the backend's answer", body)
		}
		if v := backend.next(t); v.tls || v.proxySource != c.LocalAddr().String() {
			t.Errorf("backend saw %+v, want plain HTTP from %v", v, c.LocalAddr())
		}
	})
	t.Run("garbage is closed", func(t *testing.T) {
		c := dialTCP(t, addr)
		_, _ = c.Write([]byte{0xff, 0xfe, 0xfd, 0xfc})
		expectClosed(t, c)
	})
}

// TestSharedPortAcrossTLSListener: a tls:// listener routes the same way.
func TestSharedPortTLSListener(t *testing.T) {
	backend := startWebBackend(t)
	s := startServer(t, withWeb(relay.WebConfig{Backend: backend.addr, TURNHosts: []string{"turn.example.org"}}))
	addr := s.addrs[relay.TLS]
	c := dialTLS(t, addr, &tls.Config{ServerName: "localhost", RootCAs: backend.roots})
	if _, body := httpGet(t, c, "/x"); body != "backend:/x" {
		t.Fatalf("got %q", body)
	}
	if v := backend.next(t); v.proxySource != "" {
		t.Errorf("PROXY header sent although not configured: %+v", v)
	}
	allocateOver(t, dialTLS(t, addr, &tls.Config{ServerName: "turn.example.org", InsecureSkipVerify: true}), addr) //nolint:gosec // self-signed
}

// expectClosed checks that the server closes c promptly.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open after 3 s")
	}
}

// TestBuiltInPage: with no backend, a browser gets a short page naming the
// service and the connection closes; TURN is served as before.
func TestBuiltInPage(t *testing.T) {
	s := startServer(t)
	addr := s.addrs[relay.TCPTLS]
	check := func(t *testing.T, c net.Conn, wantTLS bool) {
		t.Helper()
		resp, body := httpGet(t, c, "/")
		if resp.StatusCode != 200 || !strings.Contains(body, "Postern STUN/TURN relay") {
			t.Fatalf("got %d %q, want the built-in page", resp.StatusCode, body)
		}
		expectClosed(t, c)
	}
	t.Run("HTTPS", func(t *testing.T) {
		c := dialTLS(t, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // self-signed
		if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("ALPN %q, want http/1.1", p)
		}
		check(t, c, true)
	})
	t.Run("HTTPS on the tls listener", func(t *testing.T) {
		c := dialTLS(t, s.addrs[relay.TLS], &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) //nolint:gosec // self-signed
		check(t, c, true)
	})
	t.Run("plain HTTP", func(t *testing.T) {
		check(t, dialTCP(t, addr), false)
	})
	t.Run("HEAD", func(t *testing.T) {
		c := dialTCP(t, addr)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodHead})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("HEAD: %v %v", resp, err)
		}
		expectClosed(t, c)
	})
	t.Run("TURN still served", func(t *testing.T) {
		c := dialTLS(t, addr, &tls.Config{ServerName: "anything.example", InsecureSkipVerify: true}) //nolint:gosec // self-signed
		allocateOver(t, c, addr)
	})
}

// TestALPN: RFC 7443 "stun.turn" is negotiated when offered, on tls:// and
// tcp+tls:// listeners, and TURN works over the connection; a client
// offering no ALPN gets none.
func TestALPN(t *testing.T) {
	s := startServer(t)
	for _, kind := range []relay.ListenerKind{relay.TLS, relay.TCPTLS} {
		t.Run(kind.String(), func(t *testing.T) {
			addr := s.addrs[kind]
			c := dialTLS(t, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"stun.turn"}}) //nolint:gosec // self-signed
			if p := c.ConnectionState().NegotiatedProtocol; p != "stun.turn" {
				t.Fatalf("negotiated %q, want stun.turn", p)
			}
			allocateOver(t, c, addr)

			c = dialTLS(t, addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed
			if p := c.ConnectionState().NegotiatedProtocol; p != "" {
				t.Fatalf("negotiated %q without ALPN offered", p)
			}
			allocateOver(t, c, addr)
		})
	}
}

// mappedVia sends a Binding request over conn and returns
// XOR-MAPPED-ADDRESS.
func mappedVia(t *testing.T, conn net.Conn, addr string) string {
	t.Helper()
	t.Cleanup(func() { _ = conn.Close() })
	client := newClient(t, turn.NewSTUNConn(conn), addr, testUser, testPassword)
	mapped, err := client.SendBindingRequest()
	if err != nil {
		t.Fatalf("binding: %v", err)
	}
	return mapped.String()
}

// writeProxyHeader starts conn with a PROXY header naming src.
func writeProxyHeader(t *testing.T, conn net.Conn, version byte, src string) {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), conn.RemoteAddr())
	if _, err := h.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
}

// TestProxyProtocol: from a trusted source, the PROXY header's client is
// the client everywhere (XOR-MAPPED-ADDRESS, the allocation's 5-tuple, the
// web backend's own PROXY header); from anyone else a header closes the
// connection.
func TestProxyProtocol(t *testing.T) {
	backend := startWebBackend(t)
	trusted := startServer(t, withProxyFrom("127.0.0.0/8", "::1/128"),
		withWeb(relay.WebConfig{Backend: backend.addr, BackendProxyProtocol: true}))

	t.Run("v2 over TCP", func(t *testing.T) {
		addr := trusted.addrs[relay.TCP]
		c := dialTCP(t, addr)
		writeProxyHeader(t, c, 2, "203.0.113.9:4444")
		if got := mappedVia(t, c, addr); got != "203.0.113.9:4444" {
			t.Errorf("XOR-MAPPED-ADDRESS %s, want the PROXY header's client", got)
		}
	})
	t.Run("v1 over TLS", func(t *testing.T) {
		addr := trusted.addrs[relay.TLS]
		raw := dialTCP(t, addr)
		writeProxyHeader(t, raw, 1, "198.51.100.7:5555")
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed
		if got := mappedVia(t, c, addr); got != "198.51.100.7:5555" {
			t.Errorf("XOR-MAPPED-ADDRESS %s, want the PROXY header's client", got)
		}
	})
	t.Run("v2 over tcp+tls, IPv6 client, allocation", func(t *testing.T) {
		addr := trusted.addrs[relay.TCPTLS]
		raw := dialTCP(t, addr)
		writeProxyHeader(t, raw, 2, "[2001:db8::5]:6000")
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed
		relayConn := allocateOver(t, c, addr)
		var found *allocations.Allocation
		trusted.Table().Range(func(a *allocations.Allocation) bool {
			if a.Relayed.String() == relayConn.LocalAddr().String() {
				found = a
			}
			return true
		})
		if found == nil || found.FiveTuple.Client.String() != "[2001:db8::5]:6000" {
			t.Fatalf("allocation %+v, want client [2001:db8::5]:6000", found)
		}
	})
	t.Run("trusted source without a header", func(t *testing.T) {
		addr := trusted.addrs[relay.TCP]
		c := dialTCP(t, addr)
		if got := mappedVia(t, c, addr); got != c.LocalAddr().String() {
			t.Errorf("XOR-MAPPED-ADDRESS %s, want the connection's own %s", got, c.LocalAddr())
		}
	})
	t.Run("LOCAL command (health check)", func(t *testing.T) {
		addr := trusted.addrs[relay.TCP]
		c := dialTCP(t, addr)
		h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
		if _, err := h.WriteTo(c); err != nil {
			t.Fatal(err)
		}
		if got := mappedVia(t, c, addr); got != c.LocalAddr().String() {
			t.Errorf("XOR-MAPPED-ADDRESS %s, want the connection's own %s", got, c.LocalAddr())
		}
	})
	t.Run("through to the web backend", func(t *testing.T) {
		c := dialTCP(t, trusted.addrs[relay.TCPTLS])
		writeProxyHeader(t, c, 2, "192.0.2.44:1234")
		if _, body := httpGet(t, c, "/lb"); body != "backend:/lb" {
			t.Fatalf("got %q", body)
		}
		if v := backend.next(t); v.proxySource != "192.0.2.44:1234" {
			t.Errorf("backend's PROXY header names %q, want the original client 192.0.2.44:1234", v.proxySource)
		}
	})
	t.Run("malformed header from a trusted source", func(t *testing.T) {
		c := dialTCP(t, trusted.addrs[relay.TCP])
		_, _ = c.Write([]byte("PROXY TCP4 not-an-address\r\n"))
		expectClosed(t, c)
	})

	// An untrusted header is refused before routing: it reaches neither
	// TURN (whose framer would also refuse it) nor the web backend (which
	// would take "PROXY ..." for an HTTP request line and might trust it).
	backend2 := startWebBackend(t)
	untrusted := startServer(t, withProxyFrom("10.0.0.0/8"),
		withWeb(relay.WebConfig{Backend: backend2.addr, BackendProxyProtocol: true}))
	for _, kind := range []relay.ListenerKind{relay.TCP, relay.TLS, relay.TCPTLS} {
		for _, version := range []byte{1, 2} {
			t.Run(fmt.Sprintf("untrusted v%d on %v", version, kind), func(t *testing.T) {
				c := dialTCP(t, untrusted.addrs[kind])
				writeProxyHeader(t, c, version, "203.0.113.9:4444")
				fmt.Fprint(c, "GET /spoofed HTTP/1.1\r\nHost: x\r\n\r\n")
				expectClosed(t, c)
			})
		}
	}
	if n := backend2.conns.Load(); n != 0 {
		t.Errorf("%d connections with an untrusted PROXY header reached the web backend", n)
	}
	t.Run("untrusted source, no header", func(t *testing.T) {
		addr := untrusted.addrs[relay.TCP]
		c := dialTCP(t, addr)
		if got := mappedVia(t, c, addr); got != c.LocalAddr().String() {
			t.Errorf("XOR-MAPPED-ADDRESS %s, want %s", got, c.LocalAddr())
		}
	})
}
