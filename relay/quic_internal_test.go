package relay

import (
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
