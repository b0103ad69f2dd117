package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

// Tests of UDP sharing with a QUIC backend (quic.go): a real HTTP/3 server
// and client (quic-go) through the UDP listener beside a TURN client, and
// raw datagrams for expiry, caps and the PROXY header.

func withQUIC(q relay.QUICConfig) serverOption { return func(c *relay.Config) { c.QUIC = q } }

// startH3Backend runs an HTTP/3 server on 127.0.0.1 that answers every GET
// with body, and returns its address.
func startH3Backend(t *testing.T, body string) string {
	t.Helper()
	cert, err := relay.SelfSignedCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, body+r.URL.Path)
		}),
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(pc) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = pc.Close()
		<-done
	})
	return pc.LocalAddr().String()
}

// h3Client is an HTTP/3 client that trusts any certificate (the backend's
// is self-signed), closed when the test ends.
func h3Client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}, //nolint:gosec // test backend
		QUICConfig:      &quic.Config{HandshakeIdleTimeout: 5 * time.Second, MaxIdleTimeout: 10 * time.Second},
	}
	t.Cleanup(func() { _ = tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

// TestQUICSharedWithTURN: HTTP/3 GETs through Postern's UDP listener reach
// the QUIC backend and return its body while a TURN client relays through
// the same port (Send indications, then ChannelData, whose first bytes
// overlap QUIC short headers).
func TestQUICSharedWithTURN(t *testing.T) {
	backend := startH3Backend(t, "hello from h3 ")
	s := startServer(t, withQUIC(relay.QUICConfig{Backend: backend}))
	udpAddr := s.addrs[relay.UDP]

	client := newClient(t, clientConn(t, relay.UDP, udpAddr, false), udpAddr, testUser, testPassword)
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relayConn.Close()
	peer := turntest.EchoPeer(t)

	h3 := h3Client(t)
	type result struct {
		body string
		err  error
	}
	results := make(chan result, 1)
	go func() {
		// Several requests, so that they overlap the relaying below; one
		// QUIC connection carries them all.
		var last result
		for i := range 5 {
			last.body, last.err = get(h3, fmt.Sprintf("https://%s/r%d", udpAddr, i))
			if last.err != nil {
				break
			}
		}
		results <- last
	}()
	roundTrip(t, relayConn, peer.LocalAddr(), 40)
	select {
	case r := <-results:
		if r.err != nil {
			t.Fatalf("HTTP/3 GET through the shared port: %v", r.err)
		}
		if r.body != "hello from h3 /r4" {
			t.Errorf("body = %q, want the backend's", r.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("HTTP/3 GETs did not finish")
	}
	// And the TURN side still works once the QUIC connection is up.
	roundTrip(t, relayConn, peer.LocalAddr(), 5)

	st := s.QUICStats()
	if st.Flows != 1 || st.Opened != 1 {
		t.Errorf("QUIC stats = %+v, want one flow (one client socket)", st)
	}
	if d := s.Stats().Drops["quic_flow_limit"]; d != 0 {
		t.Errorf("quic_flow_limit drops = %d, want 0", d)
	}
}

// rawQUIC sends datagrams that look like QUIC to the listener from its own
// socket on ip.
type rawQUIC struct {
	conn *net.UDPConn
}

func dialRaw(t *testing.T, ip string, listener string) *rawQUIC {
	t.Helper()
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(listener)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawQUIC{conn: c}
}

// initial is a datagram with a QUIC long header (first byte 0xC0: header
// form and fixed bit) of the 1200 bytes an Initial needs, tagged with tag.
func initial(tag string) []byte {
	b := make([]byte, 1200)
	b[0] = 0xc0
	copy(b[1:], tag)
	return b
}

func (r *rawQUIC) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := r.conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

// echo sends b and waits for it to come back.
func (r *rawQUIC) echo(t *testing.T, b []byte) {
	t.Helper()
	r.send(t, b)
	buf := make([]byte, 2048)
	_ = r.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := r.conn.Read(buf)
	if err != nil {
		t.Fatalf("no answer through the shared port: %v", err)
	}
	if !bytes.Equal(buf[:n], b) {
		t.Fatalf("answer %q..., want the datagram echoed", buf[:min(n, 16)])
	}
}

// TestQUICFlowsExpire: a flow ends after IdleTimeout without a datagram from
// its client, not before while the client keeps sending, and the next
// datagram opens a new one.
func TestQUICFlowsExpire(t *testing.T) {
	backend := turntest.EchoPeer(t)
	const idle = 300 * time.Millisecond
	s := startServer(t, withQUIC(relay.QUICConfig{Backend: backend.LocalAddr().String(), IdleTimeout: idle}))
	c := dialRaw(t, "127.0.0.1", s.addrs[relay.UDP])

	c.echo(t, initial("first"))
	if st := s.QUICStats(); st.Flows != 1 || st.Opened != 1 {
		t.Fatalf("after the first datagram: %+v, want one flow", st)
	}
	// Kept alive by the client: short headers (0x40-0x7f, the ChannelData
	// range, from a client without an allocation) every third of the
	// timeout, for three timeouts.
	for end := time.Now().Add(3 * idle); time.Now().Before(end); {
		c.echo(t, []byte{0x41, 0x00, 0x00, 0x04, 'k', 'e', 'e', 'p'})
		time.Sleep(idle / 3)
	}
	if st := s.QUICStats(); st.Flows != 1 || st.Opened != 1 || st.Expired != 0 {
		t.Fatalf("while the client sends: %+v, want the one flow kept", st)
	}
	turntest.WaitFor(t, "the idle flow to expire", func() bool { return s.QUICStats().Flows == 0 })
	if st := s.QUICStats(); st.Expired != 1 {
		t.Errorf("after idling: %+v, want one expired", st)
	}
	c.echo(t, initial("again"))
	if st := s.QUICStats(); st.Flows != 1 || st.Opened != 2 {
		t.Errorf("after a new datagram: %+v, want a second flow", st)
	}
}

// proxyBackend is a UDP backend that reads a PROXY v2 header in front of
// every datagram, records the client it names, and echoes the rest.
type proxyBackend struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	clients map[netip.AddrPort]int // datagrams per client named
	dst     netip.AddrPort
	bad     int // datagrams without a valid header
}

func startProxyBackend(t *testing.T) *proxyBackend {
	t.Helper()
	b := &proxyBackend{conn: turntest.ListenPeer(t), clients: map[netip.AddrPort]int{}}
	go func() {
		buf := make([]byte, 70000)
		for {
			n, from, err := b.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			br := bufio.NewReader(bytes.NewReader(buf[:n]))
			h, err := proxyproto.Read(br)
			b.mu.Lock()
			if err != nil || h.Command != proxyproto.PROXY || h.TransportProtocol != proxyproto.UDPv4 {
				b.bad++
				b.mu.Unlock()
				continue
			}
			src := h.SourceAddr.(*net.UDPAddr).AddrPort()
			b.clients[netip.AddrPortFrom(src.Addr().Unmap(), src.Port())]++
			dst := h.DestinationAddr.(*net.UDPAddr).AddrPort()
			b.dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
			b.mu.Unlock()
			rest, _ := io.ReadAll(br)
			_, _ = b.conn.WriteToUDPAddrPort(rest, from)
		}
	}()
	return b
}

func (b *proxyBackend) snapshot() (clients map[netip.AddrPort]int, dst netip.AddrPort, bad int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	clients = make(map[netip.AddrPort]int, len(b.clients))
	for k, v := range b.clients {
		clients[k] = v
	}
	return clients, b.dst, b.bad
}

// TestQUICProxyProtocol: with BackendProxyProtocol every datagram to the
// backend starts with a PROXY v2 header (UDP over IPv4) naming the client
// and the listener; the backend's answer reaches the client without it.
func TestQUICProxyProtocol(t *testing.T) {
	backend := startProxyBackend(t)
	s := startServer(t, withQUIC(relay.QUICConfig{Backend: backend.conn.LocalAddr().String(), BackendProxyProtocol: true}))
	c := dialRaw(t, "127.0.0.1", s.addrs[relay.UDP])
	c.echo(t, initial("one"))
	c.echo(t, []byte{0x50, 1, 2, 3}) // a short header on the same flow
	clients, dst, bad := backend.snapshot()
	me := c.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if len(clients) != 1 || clients[me] != 2 || bad != 0 {
		t.Errorf("backend saw clients %v (%d without a header), want %v twice", clients, bad, me)
	}
	if want := netip.MustParseAddrPort(s.addrs[relay.UDP]); dst != want {
		t.Errorf("PROXY destination = %v, want the listener %v", dst, want)
	}
}

// TestQUICFloodWithinCaps: datagrams from many source ports of three
// addresses open no more flows than the caps allow (per address and in
// total), the rest are dropped and counted, datagrams that cannot start a
// QUIC connection open none, and TURN still works.
func TestQUICFloodWithinCaps(t *testing.T) {
	backend := startProxyBackend(t)
	const total, perClient, ports = 20, 8, 40
	s := startServer(t, withQUIC(relay.QUICConfig{
		Backend: backend.conn.LocalAddr().String(), BackendProxyProtocol: true,
		MaxFlows: total, MaxFlowsPerClient: perClient,
	}))
	listener := s.addrs[relay.UDP]
	goroutines := runtime.NumGoroutine()

	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	for _, ip := range ips {
		for i := range ports {
			c := dialRaw(t, ip, listener)
			c.send(t, initial(fmt.Sprintf("%s/%d", ip, i)))
			// None of these may open a flow: no fixed bit, a long header
			// shorter than an Initial, a STUN-range datagram that is not
			// STUN.
			c.send(t, []byte{0x05, 1, 2, 3})
			c.send(t, []byte{0xc0, 1, 2, 3})
			c.send(t, []byte{0x01, 1, 2, 3})
		}
	}
	sent := len(ips) * ports
	turntest.WaitFor(t, "the flood to be counted", func() bool {
		d := s.Stats().Drops
		return d["quic_flow_limit"] >= uint64(sent-total) && d["no_allocation"] >= uint64(3*(sent-total))
	})
	st := s.QUICStats()
	if st.Flows != total || st.Opened != total {
		t.Errorf("flows = %+v, want exactly the cap of %d", st, total)
	}
	if d := s.Stats().Drops["quic_flow_limit"]; d != uint64(sent-total) {
		t.Errorf("quic_flow_limit drops = %d, want %d", d, sent-total)
	}
	// Of the sources without a flow; those with one forward them.
	if d := s.Stats().Drops["no_allocation"]; d != uint64(3*(sent-total)) {
		t.Errorf("no_allocation drops = %d, want %d (datagrams that open no flow)", d, 3*(sent-total))
	}
	turntest.WaitFor(t, "the backend to see every flow", func() bool {
		clients, _, _ := backend.snapshot()
		return len(clients) == total
	})
	clients, _, bad := backend.snapshot()
	perIP := map[netip.Addr]int{}
	for c := range clients {
		perIP[c.Addr()]++
	}
	for ip, n := range perIP {
		if n > perClient {
			t.Errorf("%v has %d flows, over the per-client cap %d", ip, n, perClient)
		}
	}
	if bad != 0 {
		t.Errorf("%d datagrams reached the backend without a PROXY header", bad)
	}
	// A goroutine per flow, nothing per dropped datagram.
	if g := runtime.NumGoroutine(); g > goroutines+total+10 {
		t.Errorf("%d goroutines after the flood, %d before: more than one per flow", g, goroutines)
	}

	client := newClient(t, clientConn(t, relay.UDP, listener, false), listener, testUser, testPassword)
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate after the flood: %v", err)
	}
	defer relayConn.Close()
	roundTrip(t, relayConn, turntest.EchoPeer(t).LocalAddr(), 10)
}

// TestQUICOff: without a backend, QUIC-looking datagrams are dropped as
// before, and no flow exists.
func TestQUICOff(t *testing.T) {
	s := startServer(t)
	c := dialRaw(t, "127.0.0.1", s.addrs[relay.UDP])
	c.send(t, initial("nobody"))
	_ = c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.conn.Read(make([]byte, 2048)); !isTimeout(err) {
		t.Errorf("read = %v, want no answer", err)
	}
	if st := s.QUICStats(); st != (relay.QUICStats{}) {
		t.Errorf("QUIC stats = %+v, want zero", st)
	}
}

// TestQUICBadBackend: a backend that is not HOST:PORT fails New, one that
// does not resolve fails Start, with an error naming it.
func TestQUICBadBackend(t *testing.T) {
	for _, backend := range []string{"127.0.0.1", ":443", "127.0.0.1:0", "no-such-host.invalid:443"} {
		s, err := relay.New(relay.Config{
			Listeners:         []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:0"}},
			ListenersExplicit: true,
			Auth:              newAuth(t, 0),
			Policy:            loopbackPolicy(),
			RelayIP:           netip.MustParseAddr("127.0.0.1"),
			QUIC:              relay.QUICConfig{Backend: backend},
		})
		if err != nil { // a malformed address: refused by New
			if !strings.Contains(err.Error(), backend) {
				t.Errorf("backend %q: error %q does not name it", backend, err)
			}
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		err = s.Start(ctx) // a name that does not resolve: by Start
		cancel()
		if err == nil {
			_ = s.Wait()
			t.Errorf("backend %q: Start succeeded", backend)
			continue
		}
		if !strings.Contains(err.Error(), backend) {
			t.Errorf("backend %q: error %q does not name it", backend, err)
		}
	}
}
