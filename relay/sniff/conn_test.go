package sniff

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	return client, server
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// TestAcceptProxy: a PROXY header from a trusted source names the client
// and is consumed; from an untrusted one it is refused; without one the
// peer is the client. What follows the header is read unchanged.
func TestAcceptProxy(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.5:4000")
	for _, version := range []byte{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			client, server := tcpPair(t)
			h := proxyproto.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(src), client.RemoteAddr().(*net.TCPAddr))
			if _, err := h.WriteTo(client); err != nil {
				t.Fatal(err)
			}
			_, _ = client.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			sc, err := Accept(server, 4096, loopback)
			if err != nil {
				t.Fatal(err)
			}
			if sc.Client != src {
				t.Errorf("client %v, want %v from the header", sc.Client, src)
			}
			if first, err := sc.First(); err != nil || first != FirstHTTP {
				t.Errorf("First = %v, %v; want HTTP", first, err)
			}
			buf := make([]byte, 3)
			if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "GET" {
				t.Errorf("read %q, %v; want GET", buf, err)
			}
		})
	}
	client, server := tcpPair(t)
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(src), client.RemoteAddr().(*net.TCPAddr))
	_, _ = h.WriteTo(client)
	if _, err := Accept(server, 4096, nil); !errors.Is(err, ErrUntrustedProxyHeader) {
		t.Errorf("untrusted header: err = %v, want ErrUntrustedProxyHeader", err)
	}

	client, server = tcpPair(t)
	_, _ = client.Write([]byte{0x00, 0x01})
	sc, err := Accept(server, 4096, loopback)
	if err != nil {
		t.Fatal(err)
	}
	if want := client.LocalAddr().(*net.TCPAddr).AddrPort(); sc.Client != want {
		t.Errorf("no header: client %v, want the peer %v", sc.Client, want)
	}
	if first, err := sc.First(); err != nil || first != FirstOther {
		t.Errorf("STUN first byte: First = %v, %v; want other", first, err)
	}
}

// TestHelloGrows: a ClientHello larger than the connection's buffer is
// inspected in a grown buffer, and reading the connection afterwards (as a
// TLS handshake does) still yields every byte in order; Detach hands the
// buffer back only once it is drained.
func TestHelloGrows(t *testing.T) {
	protos := []string{ALPNTURN}
	for i := range 80 {
		protos = append(protos, fmt.Sprintf("x-padding-%03d-%s", i, strings.Repeat("p", 60)))
	}
	for _, conf := range []*tls.Config{
		{ServerName: "turn.example.org"},                     // fits
		{ServerName: "turn.example.org", NextProtos: protos}, // does not
	} {
		hello := recordHello(t, conf)
		t.Run(fmt.Sprintf("%d bytes", len(hello)), func(t *testing.T) {
			client, server := tcpPair(t)
			sent := append(bytes.Clone(hello), "tail"...)
			go func() { _, _ = client.Write(sent) }()
			sc, err := Accept(server, 4096, nil)
			if err != nil {
				t.Fatal(err)
			}
			if first, err := sc.First(); err != nil || first != FirstTLS {
				t.Fatalf("First = %v, %v; want TLS", first, err)
			}
			h, err := sc.Hello()
			if err != nil || h.ServerName != "turn.example.org" || len(h.ALPN) != len(conf.NextProtos) {
				t.Fatalf("Hello = %+v, %v", h.ServerName, err)
			}
			if sc.Detach() != nil {
				t.Fatal("Detach with the hello still unread")
			}
			got := make([]byte, len(sent))
			if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, sent) {
				t.Fatalf("read %d bytes (%v), differing from the %d sent", len(got), err, len(sent))
			}
			if sc.Detach() == nil {
				t.Error("Detach refused a drained buffer")
			}
		})
	}
}
