package relay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/postern/postern/auth"
)

// quietEcho is an echo backend that allocates nothing per datagram (the
// turntest one allocates a *UDPAddr each), so that allocation counts are the
// server's alone.
func quietEcho(t testing.TB) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return pc
}

// startQUICServer starts a server with one UDP listener on 127.0.0.1 that
// shares it with the QUIC backend q.
func startQUICServer(t testing.TB, q QUICConfig) *Server {
	t.Helper()
	au, err := auth.New(auth.Config{Realm: "quic", Users: map[string]string{"u": "p"}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Listeners:         []ListenSpec{{Kind: UDP, Addr: "127.0.0.1:0"}},
		ListenersExplicit: true,
		Auth:              au,
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		QUIC:              q,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = s.Wait() })
	return s
}

// TestQUICForwardAllocatesNothing drives the real listener loop and a
// flow's goroutine, both ways through an echo backend, and counts heap
// allocations per forwarded datagram in steady state.
func TestQUICForwardAllocatesNothing(t *testing.T) {
	// With the PROXY header, the echo sends it back to the client too:
	// only the count of datagrams matters here.
	for _, pp := range []bool{false, true} {
		name := "plain"
		if pp {
			name = "proxy_protocol"
		}
		t.Run(name, func(t *testing.T) {
			backend := quietEcho(t)
			s := startQUICServer(t, QUICConfig{Backend: backend.LocalAddr().String(), BackendProxyProtocol: pp})
			client, err := net.DialUDP("udp4", nil, s.Addrs()[0].Addr.(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			pkt := make([]byte, 1200)
			pkt[0] = 0xc0
			buf := make([]byte, 2048)
			roundTrips := func(bursts int) {
				for range bursts {
					for range 16 {
						if _, err := client.Write(pkt); err != nil {
							t.Fatal(err)
						}
					}
					for range 16 {
						_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
						if _, err := client.Read(buf); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			roundTrips(20) // warm up: the flow, the runtime
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			roundTrips(100)
			runtime.ReadMemStats(&after)
			// Two forwarded datagrams per round trip: to the backend, back.
			if perDatagram := float64(after.Mallocs-before.Mallocs) / 3200; perDatagram > 0.05 {
				t.Errorf("%.3f allocations per forwarded datagram, want 0", perDatagram)
			}
			if st := s.QUICStats(); st.Opened != 1 {
				t.Errorf("QUIC stats = %+v, want one flow", st)
			}
		})
	}
}

// BenchmarkQUICRoundTrip sends 1200-byte datagrams to an echo backend and
// waits for each to come back, directly and through the shared listener (a
// flow: the listener forwards, the flow's goroutine answers): the
// difference is what forwarding costs a datagram each way, in latency.
func BenchmarkQUICRoundTrip(b *testing.B) {
	backend := quietEcho(b)
	s := startQUICServer(b, QUICConfig{Backend: backend.LocalAddr().String()})
	for _, c := range []struct {
		name string
		to   *net.UDPAddr
	}{
		{"direct", backend.LocalAddr().(*net.UDPAddr)},
		{"through_postern", s.Addrs()[0].Addr.(*net.UDPAddr)},
	} {
		b.Run(c.name, func(b *testing.B) {
			client, err := net.DialUDP("udp4", nil, c.to)
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			pkt := make([]byte, 1200)
			pkt[0] = 0xc0
			buf := make([]byte, 2048)
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				if _, err := client.Write(pkt); err != nil {
					b.Fatal(err)
				}
				_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := client.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestQUICClientKey: MaxFlowsPerClient counts an IPv4 address, or an IPv6
// /64 (zones ignored).
func TestQUICClientKey(t *testing.T) {
	for _, c := range []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		if got := clientKey(netip.MustParseAddr(c.ip)); got.String() != c.want {
			t.Errorf("clientKey(%s) = %v, want %s", c.ip, got, c.want)
		}
	}
}

// TestQUICProxyHeader: the header names the client and the listener, UDP
// over the client's family; a dual-stack listener's "::" is 0.0.0.0 to an
// IPv4 client.
func TestQUICProxyHeader(t *testing.T) {
	for _, c := range []struct {
		client, local string
		want          []byte // family byte, then the addresses
	}{
		{"192.0.2.7:5000", "198.51.100.1:443", []byte{0x12, 0, 12, 192, 0, 2, 7, 198, 51, 100, 1, 0x13, 0x88, 0x01, 0xbb}},
		{"192.0.2.7:5000", "[::]:443", []byte{0x12, 0, 12, 192, 0, 2, 7, 0, 0, 0, 0, 0x13, 0x88, 0x01, 0xbb}},
		{"[2001:db8::7]:5000", "[::]:443", append(append(append([]byte{0x22, 0, 36},
			netip.MustParseAddr("2001:db8::7").AsSlice()...), make([]byte, 16)...), 0x13, 0x88, 0x01, 0xbb)},
	} {
		h, err := quicProxyHeader(netip.MustParseAddrPort(c.client), netip.MustParseAddrPort(c.local))
		if err != nil {
			t.Fatalf("%s -> %s: %v", c.client, c.local, err)
		}
		sig := []byte("\r\n\r\n\x00\r\nQUIT\n\x21")
		if !bytes.HasPrefix(h, sig) || !bytes.Equal(h[len(sig):], c.want) {
			t.Errorf("%s -> %s: header % x, want signature, PROXY command, then % x", c.client, c.local, h, c.want)
		}
	}
}
