package sniff

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// replayConn feeds fixed bytes to a TLS server and discards its answers.
type replayConn struct {
	net.Conn // nil: only the methods below are called
	r        *bytes.Reader
}

func (c *replayConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *replayConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }

var errStop = errors.New("stop after the ClientHello")

// goParse is the oracle: crypto/tls's own ClientHello parser. ok means Go
// accepted b as a ClientHello.
func goParse(b []byte) (info *tls.ClientHelloInfo, ok bool) {
	conf := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		info = h
		return nil, errStop
	}}
	_ = tls.Server(&replayConn{r: bytes.NewReader(b)}, conf).Handshake()
	return info, info != nil
}

// FuzzParseClientHello checks the ClientHello parser that routes
// connections on shared ports: it never panics, asks only for more bytes
// than it has, and agrees with crypto/tls on every hello crypto/tls
// accepts (except those too large for us to inspect, which go to
// crypto/tls unrouted).
func FuzzParseClientHello(f *testing.F) {
	for _, conf := range []*tls.Config{
		{ServerName: "turn.example.org"},
		{ServerName: "turn.example.org", NextProtos: []string{"stun.turn"}},
		{ServerName: "www.example.org", NextProtos: []string{"h2", "http/1.1"}},
		{ServerName: "turn.example.org", NextProtos: []string{"acme-tls/1"}},
		{InsecureSkipVerify: true},
		{ServerName: "x.example", MaxVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
	} {
		hello := recordHello(f, conf)
		f.Add(hello)
		f.Add(refragment(f, hello, 200))
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, need, err := ParseClientHello(b)
		if need != 0 && (err != nil || need <= len(b)) {
			t.Fatalf("need %d with %d bytes, err %v", need, len(b), err)
		}
		info, ok := goParse(b)
		if !ok {
			return
		}
		if errors.Is(err, ErrHelloTooBig) {
			return
		}
		if err != nil || need != 0 {
			t.Fatalf("crypto/tls accepted a ClientHello we did not: need %d, err %v", need, err)
		}
		if h.ServerName != NormalizeHost(info.ServerName) || !slices.Equal(h.ALPN, info.SupportedProtos) {
			t.Fatalf("got SNI %q ALPN %q, crypto/tls %q %q", h.ServerName, h.ALPN, info.ServerName, info.SupportedProtos)
		}
	})
}
