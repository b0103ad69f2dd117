package relay_test

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// TestUnauthenticatedRateLimit: one address gets at most its budget of
// answers to unauthenticated requests; another address is unaffected.
func TestUnauthenticatedRateLimit(t *testing.T) {
	s := startServer(t, withRateLimit(5, 5))
	server, err := net.ResolveUDPAddr("udp4", s.addrs[relay.UDP])
	if err != nil {
		t.Fatal(err)
	}
	flood := func(from string, n int) int {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(from)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for range n {
			req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
				proto.RequestedTransport(proto.ProtoUDP))
			if _, err := c.WriteToUDP(req.Raw, server); err != nil {
				t.Fatal(err)
			}
		}
		answers := 0
		buf := make([]byte, 1500)
		for {
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := c.ReadFromUDP(buf); err != nil {
				return answers
			}
			answers++
		}
	}
	// 50 requests in well under a second: the burst of 5, plus at most a
	// few tokens refilled at 5/s while they are answered.
	if got := flood("127.0.0.1", 50); got < 5 || got > 8 {
		t.Errorf("127.0.0.1 got %d answers to 50 unauthenticated requests, want 5-8", got)
	}
	if got := flood("127.0.0.2", 3); got != 3 {
		t.Errorf("another address got %d answers to 3 requests, want 3", got)
	}
	if d := s.Stats().Drops[relay.DropRateLimited.String()]; d < 40 {
		t.Errorf("rate_limited drops = %d, want >= 40", d)
	}
}

// TestAmplificationFactor measures what an unauthenticated request can make
// the server send: the smallest requests that get an answer, against the
// answer. README's "Security" section quotes the bound asserted here.
func TestAmplificationFactor(t *testing.T) {
	s := startServer(t)
	c := newRawClient(t, s.addrs[relay.UDP])
	cases := []struct {
		name string
		req  *stun.Message
		code int // expected error code; 0 for Binding's success
	}{
		{"Binding", stun.MustBuild(stun.TransactionID, stun.BindingRequest), 0},
		{"bare Allocate", stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)), 400},
		{"bare Refresh", stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest)), 400},
		{"Refresh with an empty attribute", stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
			proto.DontFragment{}), 400},
		{"smallest Allocate", stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			proto.ProtoUDP), 401},
	}
	// A 401 carries REALM, a 45-character NONCE and PASSWORD-ALGORITHMS
	// (RFC 8489 §9.2.4): 128 bytes with the 12-byte test realm, to the
	// smallest request challenged, 28 bytes (4.6x; each 4 bytes of realm
	// add 0.14). Shorter requests get a 400 of 48 bytes.
	const maxFactor = 5.0
	for _, tc := range cases {
		resp := c.exchange(tc.req)
		var code stun.ErrorCodeAttribute
		if got := code.GetFrom(resp); (tc.code == 0) != (got != nil) || (got == nil && int(code.Code) != tc.code) {
			t.Errorf("%s: answer %v (%v), want code %d", tc.name, resp.Type, code, tc.code)
		}
		factor := float64(len(resp.Raw)) / float64(len(tc.req.Raw))
		t.Logf("%s: %d-byte request, %d-byte answer: factor %.1f", tc.name, len(tc.req.Raw), len(resp.Raw), factor)
		if factor > maxFactor {
			t.Errorf("%s: amplification factor %.1f > %.1f", tc.name, factor, maxFactor)
		}
	}
}

// Per-victim reflection bound of the default limits, quoted in README
// ("Security and abuse limits") and relay.DefaultUnauthenticatedRate's
// comment: the most bytes a second one victim source can be sent by
// spoofed UDP requests, sustained (rates) and at once (bursts), with the
// largest unauthenticated answer (a 401 with REALM, NONCE and
// PASSWORD-ALGORITHMS: 128 bytes with the 12-character test realm) and the largest Binding answer (52
// bytes, IPv6).
const (
	maxUnauthAnswer  = 128
	maxBindingAnswer = 52
	victimBytesPerS  = relay.DefaultUnauthenticatedRate*maxUnauthAnswer + relay.DefaultBindingRate*maxBindingAnswer
	victimBurstBytes = relay.DefaultUnauthenticatedBurst*maxUnauthAnswer + relay.DefaultBindingBurst*maxBindingAnswer
)

// TestReflectionPerVictim floods the server with the default limits from
// one address, as spoofed requests would toward a victim: unauthenticated
// Allocates and Bindings, several times what the limits allow, for about a
// second. What the victim receives must stay within the bursts plus the
// rates, in bytes; without the limits it is several times more.
func TestReflectionPerVictim(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test skipped in -short mode")
	}
	if victimBytesPerS > 170_000 || victimBurstBytes > 340_000 {
		t.Fatalf("the defaults allow %d B/s and %d B at once per victim: README states 170 KB/s and 340 KB", victimBytesPerS, victimBurstBytes)
	}
	s := startServer(t, func(c *relay.Config) {
		c.UnauthenticatedRate, c.UnauthenticatedBurst = relay.DefaultUnauthenticatedRate, relay.DefaultUnauthenticatedBurst
		c.BindingRate, c.BindingBurst = relay.DefaultBindingRate, relay.DefaultBindingBurst
	})
	server, err := net.ResolveUDPAddr("udp4", s.addrs[relay.UDP])
	if err != nil {
		t.Fatal(err)
	}
	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 7)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	_ = victim.SetReadBuffer(4 << 20)
	received := make(chan int)
	go func() {
		n := 0
		buf := make([]byte, 1500)
		for {
			_ = victim.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			m, _, err := victim.ReadFromUDP(buf)
			if err != nil {
				received <- n
				return
			}
			n += m
		}
	}()
	// 20 rounds 50 ms apart: 3× the unauthenticated and 2× the Binding
	// budget of one second (burst plus rate).
	const rounds, unauthPer, bindingPer = 20, 225, 600
	allocate := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
	binding := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	sentBytes := 0
	start := time.Now()
	for range rounds {
		for range unauthPer {
			_, _ = victim.WriteToUDP(allocate.Raw, server)
			sentBytes += len(allocate.Raw)
		}
		for range bindingPer {
			_, _ = victim.WriteToUDP(binding.Raw, server)
			sentBytes += len(binding.Raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start) + 500*time.Millisecond // the reader's last wait
	got := <-received
	bound := victimBurstBytes + int(victimBytesPerS*elapsed.Seconds())
	t.Logf("victim sent %d bytes in %v and received %d (%.0f B/s; bound %d: %d at once + %d B/s)",
		sentBytes, elapsed, got, float64(got)/elapsed.Seconds(), bound, victimBurstBytes, victimBytesPerS)
	if got > bound {
		t.Errorf("one victim address received %d bytes in %v, bound %d", got, elapsed, bound)
	}
	if factor := float64(got) / float64(sentBytes); factor > 5 {
		t.Errorf("amplification %.1f > 5", factor)
	}
}

// TestFloodKeepsHeapBoundedAndServesClients sends thousands of
// unauthenticated Allocates from 256 addresses and many ports. The server
// keeps no state for them (stateless nonces, a bounded rate-limit table),
// so the heap must not grow with the flood, and a legitimate client must
// keep relaying meanwhile. A first, smaller flood warms up everything that
// is sized once (socket buffers, the limiter table, batch buffers); the
// bound applies to what the second, five times larger flood adds.
func TestFloodKeepsHeapBoundedAndServesClients(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test skipped in -short mode")
	}
	s := startServer(t, withRateLimit(10, 20))
	server, err := net.ResolveUDPAddr("udp4", s.addrs[relay.UDP])
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const addrs = 256
	flood := func(perAddr int) {
		var flooders sync.WaitGroup
		for i := range addrs {
			flooders.Go(func() {
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 1, byte(i>>8), byte(i+1))})
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				for range perAddr {
					req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
						proto.RequestedTransport(proto.ProtoUDP))
					_, _ = c.WriteToUDP(req.Raw, server)
				}
			})
		}
		flooders.Wait()
	}

	// A real client from its own address allocates and relays.
	pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	client := newClient(t, pc, s.addrs[relay.UDP], testUser, testPassword)
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("legitimate allocate: %v", err)
	}
	defer relayConn.Close()
	peer := turntest.EchoPeer(t).LocalAddr()
	roundTrip(t, relayConn, peer, 5)

	flood(4) // warm-up
	time.Sleep(100 * time.Millisecond)
	before := heap()
	done := make(chan struct{})
	go func() { defer close(done); flood(20) }()
	roundTrip(t, relayConn, peer, 10) // served during the flood
	<-done
	time.Sleep(100 * time.Millisecond) // let the queued requests drain

	growth := int64(heap()) - int64(before)
	t.Logf("heap growth over %d unauthenticated requests from %d addresses: %d bytes", addrs*20, addrs, growth)
	const bound = 1 << 20
	if growth > bound {
		t.Errorf("heap grew %d bytes during the flood, bound %d", growth, bound)
	}
	if n := s.Table().Len(); n != 1 {
		t.Errorf("table holds %d allocations, want only the legitimate one", n)
	}
}

// TestConnectionCaps: past max_conns_per_ip a source's new TCP connections
// are closed at once; another source is unaffected; closing frees a slot.
func TestConnectionCaps(t *testing.T) {
	s := startServer(t, func(c *relay.Config) { c.MaxConnsPerIP, c.MaxConns = 3, 5 })
	addr := s.addrs[relay.TCP]
	dialFrom := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// served reports whether the server answers a Binding on c.
	served := func(c net.Conn) bool {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := c.Write(req.Raw); err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(make([]byte, 512))
		return err == nil
	}
	var conns []net.Conn
	for i := range 3 {
		c := dialFrom("127.0.0.1")
		if !served(c) {
			t.Fatalf("connection %d within the cap was not served", i)
		}
		conns = append(conns, c)
	}
	if served(dialFrom("127.0.0.1")) {
		t.Fatal("a 4th connection from one address was served despite max_conns_per_ip 3")
	}
	if !served(dialFrom("127.0.0.3")) || !served(dialFrom("127.0.0.4")) {
		t.Fatal("other addresses were refused")
	}
	if served(dialFrom("127.0.0.5")) {
		t.Fatal("a 6th connection was served despite max_conns 5")
	}
	_ = conns[0].Close()
	deadline := time.Now().Add(2 * time.Second)
	for !served(dialFrom("127.0.0.1")) {
		if time.Now().After(deadline) {
			t.Fatal("closing a connection did not free its slot")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := s.Stats().Drops[relay.DropConnLimit.String()]; d < 2 {
		t.Errorf("conn_limit drops = %d, want >= 2", d)
	}
}

// TestDrain: while draining, existing allocations keep working and new
// ones are refused with 508, or 300 Try Alternate when an alternate server
// is configured.
func TestDrain(t *testing.T) {
	alt := netip.MustParseAddrPort("192.0.2.10:3478")
	for _, tc := range []struct {
		name string
		alt  netip.AddrPort
		want stun.ErrorCode
	}{{"no alternate", netip.AddrPort{}, stun.CodeInsufficientCapacity}, {"alternate", alt, stun.CodeTryAlternate}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, func(c *relay.Config) { c.AlternateServer = tc.alt })
			old := newRawClient(t, s.addrs[relay.UDP])
			wantCode(t, "Allocate before drain", old.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), 0)
			s.SetDraining(true)
			if s.Ready() {
				t.Error("Ready() while draining")
			}
			fresh := newRawClient(t, s.addrs[relay.UDP])
			resp := fresh.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP))
			wantCode(t, "Allocate while draining", resp, tc.want)
			if tc.alt.IsValid() {
				var as stun.AlternateServer
				if err := as.GetFrom(resp); err != nil || as.Port != int(alt.Port()) || !as.IP.Equal(net.IP(alt.Addr().AsSlice())) {
					t.Errorf("ALTERNATE-SERVER %v:%d (%v), want %v", as.IP, as.Port, err, alt)
				}
			}
			wantCode(t, "Refresh of an existing allocation while draining", old.authed(stun.MethodRefresh), 0)
			if n := s.Table().Len(); n != 1 {
				t.Errorf("table has %d allocations, want the old one only", n)
			}
		})
	}
}
