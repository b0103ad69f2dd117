package sniff

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// helloConn captures what a TLS client writes and fails its reads, so a
// client handshake stops right after sending its ClientHello.
type helloConn struct {
	net.Conn // nil: only the methods below are called
	out      bytes.Buffer
}

func (c *helloConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *helloConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *helloConn) Close() error                     { return nil }
func (c *helloConn) SetDeadline(time.Time) error      { return nil }
func (c *helloConn) SetReadDeadline(time.Time) error  { return nil }
func (c *helloConn) SetWriteDeadline(time.Time) error { return nil }

// recordHello returns the ClientHello crypto/tls sends with conf.
func recordHello(t testing.TB, conf *tls.Config) []byte {
	t.Helper()
	c := &helloConn{}
	_ = tls.Client(c, conf).Handshake() // fails at the first read
	if c.out.Len() == 0 {
		t.Fatal("the TLS client wrote nothing")
	}
	return c.out.Bytes()
}

// refragment splits the handshake messages of the records in b into
// records of at most size bytes of payload each.
func refragment(t testing.TB, b []byte, size int) []byte {
	t.Helper()
	var payload []byte
	for len(b) > 0 {
		n := int(b[3])<<8 | int(b[4])
		payload = append(payload, b[5:5+n]...)
		b = b[5+n:]
	}
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

func TestParseClientHello(t *testing.T) {
	tests := []struct {
		name     string
		conf     *tls.Config
		wantSNI  string
		wantALPN []string
	}{
		{"sni and alpn", &tls.Config{ServerName: "turn.example.org", NextProtos: []string{"h2", "http/1.1"}},
			"turn.example.org", []string{"h2", "http/1.1"}},
		{"stun.turn", &tls.Config{ServerName: "turn.example.org", NextProtos: []string{"stun.turn"}},
			"turn.example.org", []string{"stun.turn"}},
		{"no sni (IP address)", &tls.Config{ServerName: "192.0.2.1", InsecureSkipVerify: true},
			"", nil},
		{"upper case", &tls.Config{ServerName: "TURN.Example.ORG"}, "turn.example.org", nil},
		{"acme", &tls.Config{ServerName: "a.example", NextProtos: []string{"acme-tls/1"}},
			"a.example", []string{"acme-tls/1"}},
		{"tls 1.2 only", &tls.Config{ServerName: "x.example", MaxVersion: tls.VersionTLS12},
			"x.example", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello := recordHello(t, tt.conf)
			for _, size := range []int{1 << 14, 1000, 300} {
				b := hello
				if size != 1<<14 {
					b = refragment(t, hello, size)
				}
				h, need, err := ParseClientHello(b)
				if err != nil || need != 0 {
					t.Fatalf("fragments of %d: need %d, err %v", size, need, err)
				}
				if h.ServerName != tt.wantSNI || !slices.Equal(h.ALPN, tt.wantALPN) {
					t.Errorf("fragments of %d: got SNI %q ALPN %q, want %q %q", size, h.ServerName, h.ALPN, tt.wantSNI, tt.wantALPN)
				}
				// Every proper prefix asks for more, never for less than
				// it has, and never fails.
				for i := range len(b) {
					_, need, err := ParseClientHello(b[:i])
					if err != nil || need <= i || need > len(b) {
						t.Fatalf("fragments of %d, prefix %d of %d: need %d, err %v", size, i, len(b), need, err)
					}
				}
				// peekClientHello leaves every byte in place.
				br := bufio.NewReaderSize(bytes.NewReader(b), HelloBufSize)
				if _, err := PeekClientHello(br); err != nil {
					t.Fatalf("peek: %v", err)
				}
				if br.Buffered() != len(b) {
					t.Errorf("peek consumed bytes: %d buffered of %d", br.Buffered(), len(b))
				}
			}
		})
	}
}

func TestParseClientHelloRejects(t *testing.T) {
	hello := recordHello(t, &tls.Config{ServerName: "a.example"})
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(hello)) }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"plain http", []byte("GET / HTTP/1.1\r\n\r\n"), ErrNotHandshake},
		{"alert record", mutate(func(b []byte) []byte { b[0] = 0x15; return b }), ErrNotHandshake},
		{"server hello", mutate(func(b []byte) []byte { b[5] = 2; return b }), ErrNotHello},
		{"empty record", []byte{0x16, 3, 1, 0, 0}, ErrBadHello},
		{"oversized record", []byte{0x16, 3, 1, 0xff, 0xff}, ErrBadHello},
		{"hello too large", []byte{0x16, 3, 1, 0, 4, 1, 0x01, 0, 0}, ErrHelloTooBig},
		{"short body", []byte{0x16, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3}, ErrBadHello},
		{"one byte per record", refragment(t, hello, 1), ErrHelloTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, need, err := ParseClientHello(tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v (need %d), want %v", err, need, tt.want)
			}
		})
	}
}

func TestRouteTLS(t *testing.T) {
	hello := func(sni string, alpn ...string) ClientHello { return ClientHello{ServerName: sni, ALPN: alpn} }
	shared := &Router{Backend: true, TURNHosts: []string{"turn.example.org"}, ACMEHosts: []string{"turn.example.org"}}
	anyName := &Router{Backend: true}
	alone := &Router{}
	tests := []struct {
		name string
		w    *Router
		h    ClientHello
		want Route
	}{
		{"turn host, no alpn", shared, hello("turn.example.org"), RouteTURN},
		{"no sni, no alpn", shared, hello(""), RouteTURN},
		{"turn host, stun.turn", shared, hello("turn.example.org", "stun.turn"), RouteTURN},
		{"turn host, browser", shared, hello("turn.example.org", "h2", "http/1.1"), RouteBackend},
		{"no sni, browser", shared, hello("", "http/1.1"), RouteBackend},
		{"web name, no alpn", shared, hello("www.example.org"), RouteBackend},
		{"web name, stun.turn", shared, hello("www.example.org", "stun.turn"), RouteBackend},
		{"web name, browser", shared, hello("www.example.org", "h2"), RouteBackend},
		{"our acme challenge", shared, hello("turn.example.org", "acme-tls/1"), RouteTURN},
		{"the site's acme challenge", shared, hello("www.example.org", "acme-tls/1"), RouteBackend},
		{"no turn hosts: any name is turn", anyName, hello("whatever.example"), RouteTURN},
		{"no turn hosts: browser", anyName, hello("whatever.example", "http/1.1"), RouteBackend},
		{"alpn mixing stun.turn", anyName, hello("x", "h2", "stun.turn"), RouteTURN},
		{"no backend: browser gets the page", alone, hello("x", "h2", "http/1.1"), RoutePage},
		{"no backend: turn", alone, hello("x"), RouteTURN},
		{"no backend, other name: still turn", &Router{TURNHosts: []string{"t"}}, hello("other"), RouteTURN},
		{"no backend, other name, browser", &Router{TURNHosts: []string{"t"}}, hello("other", "http/1.1"), RoutePage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.TLS(tt.h); got != tt.want {
				t.Errorf("route = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIsHTTPStart(t *testing.T) {
	for _, m := range []string{"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "PRI"} {
		if !IsHTTPStart(m[0]) {
			t.Errorf("%s not taken for HTTP", m)
		}
	}
	for b := range byte(4) {
		if IsHTTPStart(b) {
			t.Errorf("STUN first byte %d taken for HTTP", b)
		}
	}
	if IsHTTPStart(0x16) || IsHTTPStart(strings.ToLower("g")[0]) {
		t.Error("TLS or lower case taken for HTTP")
	}
}

// BenchmarkParseClientHello is the routing cost per TLS connection on a
// shared port: parsing a browser's ClientHello in place.
func BenchmarkParseClientHello(b *testing.B) {
	hello := recordHello(b, &tls.Config{ServerName: "www.example.org", NextProtos: []string{"h2", "http/1.1"}})
	b.SetBytes(int64(len(hello)))
	b.ReportAllocs()
	for b.Loop() {
		if _, need, err := ParseClientHello(hello); err != nil || need != 0 {
			b.Fatal(need, err)
		}
	}
}
