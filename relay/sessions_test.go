package relay_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

// TestStatsBreakdown allocates over UDP and TLS, relays, fails to
// authenticate in each way, and checks every new field of Stats.
func TestStatsBreakdown(t *testing.T) {
	s := startServer(t)
	before := s.Stats()
	if before.AllocationsActive != 0 || before.TLSHandshakes != 0 {
		t.Fatalf("fresh server: %+v", before)
	}
	// Every bound listener and transport has its row from the start (tcp+tls
	// two), at zero, so metrics series exist before the first allocation.
	if len(before.Listeners) != 5 {
		t.Fatalf("fresh server lists %d listener rows, want 5: %+v", len(before.Listeners), before.Listeners)
	}
	for _, l := range before.Listeners {
		if l.Active != 0 || l.Created != 0 {
			t.Fatalf("fresh server: listener row %+v is not zero", l)
		}
	}

	udpAddr, tlsAddr := s.addrs[relay.UDP], s.addrs[relay.TLS]
	peer := turntest.EchoPeer(t)
	cu := newClient(t, clientConn(t, relay.UDP, udpAddr, false), udpAddr, testUser, testPassword)
	ru, err := cu.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer ru.Close()
	roundTrip(t, ru, peer.LocalAddr(), 10)
	// pion binds a channel in the background after the first sends, and
	// the server counts a datagram just after sending it.
	turntest.WaitFor(t, "pion's channel binding and the traffic counts", func() bool {
		st := s.Stats()
		return st.Channels == 1 && st.ToPeer.Packets >= 10 && st.ToClient.Packets >= 10
	})
	ct := newClient(t, clientConn(t, relay.TLS, tlsAddr, true), tlsAddr, "bob", "builder")
	rt, err := ct.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	// Failures, one of each reason we can provoke with pion.
	expiredUser, expiredPass := auth.MintREST(testSecret, "carol", -time.Minute, time.Now())
	for _, cred := range [][2]string{{testUser, "wrong"}, {"mallory", "x"}, {expiredUser, expiredPass}} {
		c := newClient(t, clientConn(t, relay.UDP, udpAddr, false), udpAddr, cred[0], cred[1])
		if _, err := c.Allocate(); err == nil {
			t.Fatalf("allocate as %s succeeded", cred[0])
		}
	}

	st := s.Stats()
	if st.AllocationsActive != 2 || st.AllocationsCreated != 2 {
		t.Errorf("active %d created %d, want 2 and 2", st.AllocationsActive, st.AllocationsCreated)
	}
	wantListeners := map[string]bool{"udp://" + udpAddr + " udp": false, "tls://" + tlsAddr + " tls": false}
	for _, l := range st.Listeners {
		key := l.Listener + " " + l.Transport
		if _, ok := wantListeners[key]; !ok {
			if l.Active != 0 || l.Created != 0 {
				t.Errorf("unexpected listener stats %+v", l)
			}
			continue
		}
		wantListeners[key] = true
		if l.Active != 1 || l.Created != 1 || l.Ended["expired"]+l.Ended["deleted"]+l.Ended["closed"] != 0 {
			t.Errorf("listener %s: %+v, want 1 active, 1 created, none ended", key, l)
		}
	}
	for k, seen := range wantListeners {
		if !seen {
			t.Errorf("no stats for listener %s in %+v", k, st.Listeners)
		}
	}
	if st.Permissions != 1 || st.Channels != 1 {
		t.Errorf("permissions %d channels %d, want 1 and 1 (pion binds a channel to the peer)", st.Permissions, st.Channels)
	}
	if st.TLSHandshakes != 1 || st.TLSHandshakeFailures != 0 {
		t.Errorf("TLS handshakes ok %d failed %d, want 1 and 0", st.TLSHandshakes, st.TLSHandshakeFailures)
	}
	for reason, want := range map[string]uint64{"bad_integrity": 1, "unknown_user": 1, "expired": 1, "no_username": 0} {
		if got := st.AuthFailuresByReason[reason]; got != want {
			t.Errorf("auth failures %s = %d, want %d (all: %v)", reason, got, want, st.AuthFailuresByReason)
		}
	}
	if st.AuthFailures != 3 {
		t.Errorf("auth failures total %d, want 3", st.AuthFailures)
	}
	if st.Requests["Allocate"] < 5 || st.Requests["CreatePermission"]+st.Requests["ChannelBind"] < 1 {
		t.Errorf("requests by method: %v", st.Requests)
	}
	if st.RequestErrors[relay.RequestError{Method: "Allocate", Code: 401}] < 5 {
		t.Errorf("Allocate 401s: %v, want at least 5 (one challenge per client, and 3 failures)", st.RequestErrors)
	}
	if st.RelayPortsInUse[netip.MustParseAddr("127.0.0.1")] != 2 || st.RelayPorts.Len() == 0 {
		t.Errorf("relay ports in use %v of %v, want 2 on 127.0.0.1", st.RelayPortsInUse, st.RelayPorts)
	}
	if st.ToPeer.Packets < 10 || st.ToClient.Packets < 10 {
		t.Errorf("traffic %+v / %+v, want at least 10 packets each way", st.ToPeer, st.ToClient)
	}

	// A TLS handshake that fails is counted as such.
	c, err := net.Dial("tcp", tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("\x16\x03\x01\x00\x05hello"))
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, c)
	c.Close()
	turntest.WaitFor(t, "failed handshake counted", func() bool { return s.Stats().TLSHandshakeFailures == 1 })

	// Ending an allocation moves it from active to ended.
	if n := s.KickUser("bob"); n != 1 {
		t.Fatalf("KickUser(bob) = %d, want 1", n)
	}
	for _, l := range s.Stats().Listeners {
		if l.Listener == "tls://"+tlsAddr && (l.Active != 0 || l.Ended["deleted"] != 1) {
			t.Errorf("after kick: %+v, want 0 active and 1 deleted", l)
		}
	}
}

func TestSessionsAndKick(t *testing.T) {
	s := startServer(t)
	udpAddr, tcpAddr := s.addrs[relay.UDP], s.addrs[relay.TCP]
	restUser, restPass := auth.MintREST(testSecret, "carol", time.Hour, time.Now())
	var conns []net.PacketConn
	for _, c := range []struct {
		kind       relay.ListenerKind
		addr       string
		user, pass string
	}{
		{relay.UDP, udpAddr, testUser, testPassword},
		{relay.TCP, tcpAddr, testUser, testPassword},
		{relay.UDP, udpAddr, restUser, restPass},
	} {
		client := newClient(t, clientConn(t, c.kind, c.addr, false), c.addr, c.user, c.pass)
		rc, err := client.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rc.Close() })
		conns = append(conns, rc)
		time.Sleep(2 * time.Millisecond) // distinct creation times: oldest first
	}
	peer := turntest.EchoPeer(t)
	roundTrip(t, conns[0], peer.LocalAddr(), 3)
	// pion binds a channel in the background after the first sends.
	turntest.WaitFor(t, "pion's channel binding", func() bool { return s.Stats().Channels == 1 })

	// The server counts a datagram just after sending it, so the echo can
	// come back first: wait for the count.
	turntest.WaitFor(t, "the relayed packets counted", func() bool {
		ss := s.Sessions(testUser)
		return len(ss) > 0 && ss[0].ToPeer.Packets >= 3 && ss[0].ToClient.Packets >= 3
	})
	all := s.Sessions("")
	if len(all) != 3 {
		t.Fatalf("%d sessions, want 3: %+v", len(all), all)
	}
	first := all[0]
	if first.User != testUser || first.FiveTuple.Transport.String() != "udp" || first.Listener != "udp://"+udpAddr ||
		first.Relayed.String() != conns[0].LocalAddr().String() {
		t.Errorf("first session %+v", first)
	}
	if len(first.Permissions) != 1 || len(first.Channels) != 1 || first.ToPeer.Packets < 3 || first.ToClient.Packets < 3 {
		t.Errorf("first session state: perms %v chans %v to peer %+v to client %+v", first.Permissions, first.Channels, first.ToPeer, first.ToClient)
	}
	if left := time.Until(first.Expires); left <= 0 || left > relay.DefaultAllocationLifetime {
		t.Errorf("lifetime left %v", left)
	}
	if all[1].Listener != "tcp://"+tcpAddr {
		t.Errorf("second session listener %q, want tcp://%s", all[1].Listener, tcpAddr)
	}
	// A REST user is found by its USER part and by the whole username.
	if got := s.Sessions("carol"); len(got) != 1 || got[0].Username != restUser {
		t.Errorf("Sessions(carol) = %+v", got)
	}
	if got := s.Sessions(restUser); len(got) != 1 {
		t.Errorf("Sessions(%q) = %d sessions, want 1", restUser, len(got))
	}

	if s.Kick(999999) {
		t.Error("Kick of an unknown ID reported success")
	}
	if !s.Kick(all[2].ID) || len(s.Sessions("carol")) != 0 {
		t.Error("Kick(carol's ID) did not end it")
	}
	if n := s.KickUser(testUser); n != 2 {
		t.Errorf("KickUser(alice) = %d, want 2", n)
	}
	if n := len(s.Sessions("")); n != 0 {
		t.Errorf("%d sessions left", n)
	}
	// The kicked relay socket is closed: the relayed port no longer relays.
	if _, err := conns[0].WriteTo([]byte("x"), peer.LocalAddr()); err == nil {
		_ = peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := peer.ReadFrom(make([]byte, 16)); err == nil {
			t.Error("a kicked allocation still relays")
		}
	}
}

func TestReadiness(t *testing.T) {
	s, err := relay.New(relay.Config{
		Listeners:         []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:0"}},
		ListenersExplicit: true,
		Auth:              newAuth(t, 0),
		Policy:            loopbackPolicy(),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(wantReady bool, wantState string) {
		t.Helper()
		if s.Ready() != wantReady || s.State() != wantState {
			t.Errorf("Ready() = %v State() = %q, want %v %q", s.Ready(), s.State(), wantReady, wantState)
		}
	}
	check(false, "starting")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	check(true, "ready")
	s.SetDraining(true)
	check(false, "draining")
	if !s.Draining() {
		t.Error("Draining() = false after SetDraining(true)")
	}
	s.SetDraining(false)
	check(true, "ready")
	cancel()
	_ = s.Wait()
	check(false, "stopping")
}

func TestParseExternalIPs(t *testing.T) {
	tests := []struct {
		in      []string
		want    string // String() of the result
		wantErr string
	}{
		{in: nil, want: ""},
		{in: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{in: []string{"203.0.113.7", "2001:db8::7"}, want: "203.0.113.7, 2001:db8::7"},
		{in: []string{"10.0.0.6=198.51.100.2", " 10.0.0.5 = 198.51.100.1 ", "::ffff:203.0.113.7"},
			want: "203.0.113.7, 10.0.0.5=198.51.100.1, 10.0.0.6=198.51.100.2"},
		{in: []string{"fd00::5=2001:db8::5"}, want: "fd00::5=2001:db8::5"},
		{in: []string{"203.0.113.7", "203.0.113.8"}, wantErr: "already advertised"},
		{in: []string{"10.0.0.5=198.51.100.1", "10.0.0.5=198.51.100.2"}, wantErr: "mapped twice"},
		{in: []string{"10.0.0.5=2001:db8::1"}, wantErr: "same family"},
		{in: []string{"auto"}, wantErr: "not an IP address"},
		{in: []string{"0.0.0.0"}, wantErr: "not a unicast"},
		{in: []string{"10.0.0.5=ff02::1"}, wantErr: "not a unicast"},
		{in: []string{"bogus=203.0.113.7"}, wantErr: "relay address"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.in, ","), func(t *testing.T) {
			m, err := relay.ParseExternalIPs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := m.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}

	m, _ := relay.ParseExternalIPs([]string{"203.0.113.7", "10.0.0.5=198.51.100.1"})
	for relayIP, want := range map[string]string{
		"10.0.0.5": "198.51.100.1", "10.0.0.6": "203.0.113.7", "::ffff:10.0.0.5": "198.51.100.1", "fd00::1": "invalid IP",
	} {
		if got := m.Public(netip.MustParseAddr(relayIP)).String(); got != want {
			t.Errorf("Public(%s) = %s, want %s", relayIP, got, want)
		}
	}
	if m.IsZero() || !(relay.ExternalIPs{}).IsZero() {
		t.Error("IsZero is wrong")
	}
}
