package udpio

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/postern/postern/internal/turntest"
)

// mustSocket is NewSocket for tests.
func mustSocket(tb testing.TB, conn *net.UDPConn) Socket {
	tb.Helper()
	sock, err := NewSocket(conn)
	if err != nil {
		tb.Fatal(err)
	}
	return sock
}

// TestSenderFamilies: the raw sender reaches IPv4 receivers from an IPv4
// socket and from a dual-stack IPv6 socket (what a listener on ":3478"
// is), also when the destination is written IPv4-mapped, and IPv6
// receivers from IPv6 sockets; a closed socket is an error, not a crash.
func TestSenderFamilies(t *testing.T) {
	v4 := turntest.ListenUDP(t)
	v4To := v4.LocalAddr().(*net.UDPAddr).AddrPort()
	v6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer v6.Close()
	v6To := v6.LocalAddr().(*net.UDPAddr).AddrPort()

	listen := func(network, addr string) *net.UDPConn {
		t.Helper()
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close() })
		return pc.(*net.UDPConn)
	}
	s := NewSender()
	for _, tc := range []struct {
		name string
		from *net.UDPConn
		to   netip.AddrPort
		recv *net.UDPConn
	}{
		{"IPv4 socket to IPv4", listen("udp4", "127.0.0.1:0"), v4To, v4},
		{"dual-stack socket to IPv4", listen("udp", ":0"), v4To, v4},
		{"dual-stack socket to IPv4-mapped", listen("udp", ":0"), netip.AddrPortFrom(netip.AddrFrom16(v4To.Addr().As16()), v4To.Port()), v4},
		{"IPv6 socket to IPv6", listen("udp6", "[::1]:0"), v6To, v6},
		{"dual-stack socket to IPv6", listen("udp", ":0"), v6To, v6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.name
			if err := s.Send(mustSocket(t, tc.from), []byte(want), nil, tc.to); err != nil {
				t.Fatalf("send: %v", err)
			}
			buf := make([]byte, 256)
			_ = tc.recv.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := tc.recv.ReadFromUDPAddrPort(buf)
			if err != nil || string(buf[:n]) != want {
				t.Fatalf("received %q (%v), want %q", buf[:n], err, want)
			}
			if from.Port() != tc.from.LocalAddr().(*net.UDPAddr).AddrPort().Port() {
				t.Errorf("from port %d, want the sending socket's", from.Port())
			}
		})
	}
	closed := listen("udp4", "127.0.0.1:0")
	out := mustSocket(t, closed)
	_ = closed.Close()
	if err := s.Send(out, []byte("x"), nil, v4To); err == nil {
		t.Error("send on a closed socket succeeded")
	}
}
