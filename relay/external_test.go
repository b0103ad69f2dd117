package relay_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

func withExternal(m relay.ExternalIPs) serverOption {
	return func(c *relay.Config) { c.ExternalIP = m }
}

func withDiscovery(servers ...string) serverOption {
	return func(c *relay.Config) { c.DiscoverExternalIP = servers }
}

// relayedHost allocates over UDP and returns the host of the
// XOR-RELAYED-ADDRESS; it checks the session and the relay socket (on
// 127.0.0.1 whatever is advertised) along the way.
func relayedHost(t *testing.T, s *testServer) string {
	t.Helper()
	addr := s.addrs[relay.UDP]
	client := newClient(t, clientConn(t, relay.UDP, addr, false), addr, testUser, testPassword)
	rc, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	host, _, _ := net.SplitHostPort(rc.LocalAddr().String())
	sessions := s.Sessions(testUser)
	if len(sessions) != 1 || sessions[0].Relayed.String() != rc.LocalAddr().String() {
		t.Fatalf("sessions %+v, want one relayed at %v", sessions, rc.LocalAddr())
	}
	var found bool
	for ip, n := range s.Stats().RelayPortsInUse {
		found = found || (ip.String() == "127.0.0.1" && n == 1)
	}
	if !found {
		t.Errorf("relay socket not on 127.0.0.1: %v", s.Stats().RelayPortsInUse)
	}
	return host
}

func TestExternalIPInRelayedAddress(t *testing.T) {
	tests := []struct {
		name string
		ext  []string
		want string
	}{
		{"none", nil, "127.0.0.1"},
		{"one address", []string{"203.0.113.9"}, "203.0.113.9"},
		{"mapped relay address", []string{"203.0.113.9", "127.0.0.1=198.51.100.7"}, "198.51.100.7"},
		{"other family only", []string{"2001:db8::9"}, "127.0.0.1"},
		{"another relay address mapped", []string{"10.1.2.3=198.51.100.7"}, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := relay.ParseExternalIPs(tt.ext)
			if err != nil {
				t.Fatal(err)
			}
			s := startServer(t, withExternal(m))
			if got := relayedHost(t, s); got != tt.want {
				t.Errorf("XOR-RELAYED-ADDRESS host %s, want %s", got, tt.want)
			}
		})
	}
}

// fakeSTUN answers Binding requests on loopback as a STUN server behind
// which the client appears as mapped; with status set it answers that error
// instead. It returns its address.
func fakeSTUN(t *testing.T, mapped netip.Addr, status stun.ErrorCode) string {
	t.Helper()
	pc := turntest.ListenUDP(t)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil || req.Type != stun.BindingRequest {
				continue
			}
			setters := []stun.Setter{stun.NewTransactionIDSetter(req.TransactionID)}
			if status != 0 {
				setters = append(setters, stun.NewType(stun.MethodBinding, stun.ClassErrorResponse), status)
			} else {
				setters = append(setters, stun.BindingSuccess,
					&stun.XORMappedAddress{IP: mapped.AsSlice(), Port: int(from.Port())})
			}
			resp, err := stun.Build(append(setters, stun.Fingerprint)...)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDPAddrPort(resp.Raw, from)
		}
	}()
	return pc.LocalAddr().String()
}

// silentUDP is a UDP socket on loopback that never answers.
func silentUDP(t *testing.T) string {
	t.Helper()
	pc := turntest.ListenUDP(t)
	return pc.LocalAddr().String()
}

func TestDiscoverPublicIP(t *testing.T) {
	public := netip.MustParseAddr("203.0.113.77")
	nat := fakeSTUN(t, public, 0)
	failing := fakeSTUN(t, public, stun.CodeServerError)
	loopback := netip.MustParseAddr("127.0.0.1")

	ip, server, err := relay.DiscoverPublicIP(t.Context(), loopback, []string{failing, nat})
	if err != nil || ip != public || server != nat {
		t.Fatalf("DiscoverPublicIP = %v, %q, %v; want %v from %s (after the failing server)", ip, server, err, public, nat)
	}

	// Postern is a STUN server too: from loopback it sees loopback.
	p := startServer(t)
	ip, _, err = relay.DiscoverPublicIP(t.Context(), loopback, []string{p.addrs[relay.UDP]})
	if err != nil || ip != loopback {
		t.Fatalf("DiscoverPublicIP against postern = %v, %v; want %v", ip, err, loopback)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err = relay.DiscoverPublicIP(ctx, loopback, []string{silentUDP(t)})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent server: err = %v, want one wrapping the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("silent server took %v despite a 300 ms context", d)
	}
	if _, _, err := relay.DiscoverPublicIP(t.Context(), loopback, nil); err == nil {
		t.Error("no servers: no error")
	}
	if _, _, err := relay.DiscoverPublicIP(t.Context(), loopback, []string{"no-port"}); err == nil || !strings.Contains(err.Error(), "HOST:PORT") {
		t.Errorf("bad server address: err = %v", err)
	}
}

// TestDiscoveredExternalIP starts servers with external_ip = "auto" against
// STUN servers on loopback and checks what XOR-RELAYED-ADDRESS carries.
func TestDiscoveredExternalIP(t *testing.T) {
	public := netip.MustParseAddr("203.0.113.77")
	t.Run("behind NAT", func(t *testing.T) {
		s := startServer(t, withDiscovery(fakeSTUN(t, public, 0)))
		if got := relayedHost(t, s); got != public.String() {
			t.Errorf("XOR-RELAYED-ADDRESS host %s, want the discovered %v", got, public)
		}
		if ra := s.RelayAddresses(); len(ra) != 1 || ra[0].Relay.String() != "127.0.0.1" || ra[0].Advertised != public {
			t.Errorf("RelayAddresses() = %v", ra)
		}
	})
	t.Run("postern as the STUN server: no NAT", func(t *testing.T) {
		stunServer := startServer(t)
		s := startServer(t, withDiscovery(stunServer.addrs[relay.UDP]))
		if got := relayedHost(t, s); got != "127.0.0.1" {
			t.Errorf("XOR-RELAYED-ADDRESS host %s, want 127.0.0.1", got)
		}
	})
	t.Run("a configured mapping is not asked for", func(t *testing.T) {
		m, _ := relay.ParseExternalIPs([]string{"127.0.0.1=198.51.100.7"})
		s := startServer(t, withExternal(m), withDiscovery(silentUDP(t)))
		if got := relayedHost(t, s); got != "198.51.100.7" {
			t.Errorf("XOR-RELAYED-ADDRESS host %s, want 198.51.100.7", got)
		}
	})
	t.Run("no answer stops the start", func(t *testing.T) {
		s, err := relay.New(relay.Config{
			Listeners:          []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:0"}},
			ListenersExplicit:  true,
			Auth:               newAuth(t, 0),
			Policy:             loopbackPolicy(),
			RelayIP:            netip.MustParseAddr("127.0.0.1"),
			DiscoverExternalIP: []string{silentUDP(t)},
			Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		err = s.Start(ctx)
		if err == nil || !strings.Contains(err.Error(), "stun_servers") || !strings.Contains(err.Error(), "external_ip") {
			t.Fatalf("Start = %v, want an error naming relay.stun_servers and relay.external_ip", err)
		}
		if len(s.Addrs()) != 0 {
			t.Errorf("listeners bound after a failed start: %v", s.Addrs())
		}
	})
}
