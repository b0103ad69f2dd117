package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pires/go-proxyproto"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/internal/udpio"
	"github.com/postern/postern/relay/proto"
)

// QUICConfig shares UDP listeners (typically port 443) with a QUIC server
// (HTTP/3). The zero value shares nothing: a datagram that is neither STUN
// nor ChannelData is dropped, as without it.
type QUICConfig struct {
	// Backend is the HOST:PORT of the QUIC server that also answers on
	// this port, resolved once when the server starts. Datagrams that are
	// not STUN/TURN are forwarded to it, one backend-facing UDP socket per
	// client address, and its answers go back to the client from the
	// listener's own address. Empty: off.
	Backend string
	// BackendProxyProtocol puts a PROXY protocol v2 header (command PROXY,
	// UDP over IPv4 or IPv6: the client's address and the listener's) in
	// front of every datagram sent to the backend, so that it sees the
	// real client.
	BackendProxyProtocol bool
	// IdleTimeout ends a flow when its client has sent nothing for this
	// long (DefaultQUICIdleTimeout when zero).
	IdleTimeout time.Duration
	// MaxFlows caps live flows in total (DefaultQUICMaxFlows when zero;
	// negative: no cap). MaxFlowsPerClient caps them per client IPv4
	// address or IPv6 /64 (DefaultQUICMaxFlowsPerClient when zero;
	// negative: no cap). A datagram that would open a flow over a cap is
	// dropped and counted (DropQUICFlowLimit).
	MaxFlows, MaxFlowsPerClient int
}

// Defaults of QUICConfig.
const (
	// DefaultQUICIdleTimeout is what RFC 4787 §4.3 asks of a NAT's UDP
	// mappings (REQ-5: "A NAT UDP mapping timer MUST NOT expire in less
	// than two minutes"), and longer than the idle timeouts QUIC stacks
	// use (quic-go and Chromium: 30 s), so the endpoints close idle
	// connections before the flow under them goes.
	DefaultQUICIdleTimeout = 2 * time.Minute
	// DefaultQUICMaxFlows: a flow holds a socket (an ephemeral port of
	// the host's ~28000), a goroutine and a 1.5 KiB buffer: about 5.5 KiB
	// of Go memory (measured over 1000 flows) besides the kernel's socket,
	// some 23 MiB for 4096.
	DefaultQUICMaxFlows = 4096
	// DefaultQUICMaxFlowsPerClient leaves room for the browsers of an
	// office behind one NAT address (a browser keeps one QUIC connection
	// per origin) while one address, or one IPv6 /64, takes at most a
	// sixteenth of the default total.
	DefaultQUICMaxFlowsPerClient = 256
)

const (
	// quicMaxDatagram is the largest datagram relayed from the backend to a
	// client: the largest a 1500-byte MTU path carries, and more than QUIC
	// stacks send (quic-go: 1452). A larger one is dropped (too_large),
	// which to the sender looks like a path MTU probe that was lost: QUIC's
	// path MTU discovery (RFC 9000 §14.3) stays below it.
	quicMaxDatagram = 1500
	// quicMinInitial is the smallest datagram that may open a flow with a
	// long header: RFC 9000 §14.1, "A server MUST discard an Initial packet
	// that is carried in a UDP datagram with a payload that is smaller than
	// the smallest allowed maximum datagram size of 1200 bytes", and a
	// client's first flight is an Initial.
	quicMinInitial = 1200
	// quicProxyHeaderMax is a PROXY v2 header for UDP over IPv6: 16 bytes
	// of header and 36 of addresses.
	quicProxyHeaderMax = 16 + 36
	// quicLogEvery spaces warnings about the backend.
	quicLogEvery = time.Minute
)

// First bytes of QUIC packets (RFC 9000 §17.2, §17.3): the header form bit
// is set in long headers; the fixed bit ("QUIC bit") is set in every packet
// of a version 1 endpoint that has not negotiated greasing it (RFC 9287).
const (
	quicLongHeader = 0x80
	quicFixedBit   = 0x40
)

// quicRelay is the server's side of UDP sharing with a QUIC backend (nil
// when QUICConfig.Backend is empty): the caps, and every flow for shutdown.
type quicRelay struct {
	s       *Server
	cfg     QUICConfig
	backend netip.AddrPort

	opened, expired atomic.Uint64
	lastWarn        atomic.Int64 // s.mono of the last warning about the backend

	mu sync.Mutex
	// mu guards the following.
	closed    bool
	flows     map[*quicFlow]struct{}
	perClient map[netip.Prefix]int
	wg        sync.WaitGroup // flow goroutines
}

// quicReader is one listener socket's side of QUIC sharing. The kernel sends
// all of a client's datagrams to one socket of a listener (SO_REUSEPORT
// hashes the 4-tuple), so the socket's reader goroutine finds that client's
// flow in a map of its own; mu is contended only when a flow ends (its
// goroutine removes it) or by QUICStats.
type quicReader struct {
	q   *quicRelay
	so  *udpSocket
	snd *udpio.Sender
	buf []byte // a PROXY header and a datagram, for BackendProxyProtocol

	mu    sync.Mutex
	flows map[netip.AddrPort]*quicFlow // mu
}

// quicFlow is one client address's flow to the backend: a UDP socket
// connected to the backend, so that the backend sees one client per flow
// and the kernel drops datagrams from anyone else, and a goroutine that
// reads it and answers the client through the listener socket.
type quicFlow struct {
	r      *quicReader
	client netip.AddrPort
	key    netip.Prefix // the client's IPv4 address or IPv6 /64, for MaxFlowsPerClient
	conn   *net.UDPConn
	out    udpOut // conn, for the listener goroutine's sends
	hdr    []byte // PROXY v2 header; nil without BackendProxyProtocol
	last   int64  // s.mono of the client's last datagram; r.mu
}

// QUICStats describes UDP sharing with the QUIC backend.
type QUICStats struct {
	Flows   int    // live flows
	Opened  uint64 // flows opened since the start
	Expired uint64 // flows ended by QUICConfig.IdleTimeout
}

// newQUICRelay checks cfg.QUIC and resolves its backend; nil when off.
func (s *Server) newQUICRelay() (*quicRelay, error) {
	cfg := s.cfg.QUIC
	if cfg.Backend == "" {
		return nil, nil
	}
	if err := ValidateBackend(cfg.Backend); err != nil {
		return nil, fmt.Errorf("relay: QUIC %w", err)
	}
	ua, err := net.ResolveUDPAddr("udp", cfg.Backend)
	if err != nil {
		return nil, fmt.Errorf("relay: QUIC backend %q: %w", cfg.Backend, err)
	}
	backend := unmapAddrPort(ua.AddrPort())
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultQUICIdleTimeout
	}
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = DefaultQUICMaxFlows
	}
	if cfg.MaxFlowsPerClient == 0 {
		cfg.MaxFlowsPerClient = DefaultQUICMaxFlowsPerClient
	}
	return &quicRelay{
		s: s, cfg: cfg, backend: backend,
		flows:     make(map[*quicFlow]struct{}),
		perClient: make(map[netip.Prefix]int),
	}, nil
}

// reader returns the QUIC side of listener socket so.
func (q *quicRelay) reader(so *udpSocket) *quicReader {
	r := &quicReader{q: q, so: so, snd: udpio.NewSender(), flows: make(map[netip.AddrPort]*quicFlow)}
	r.snd.Zones = q.s.zones
	if q.cfg.BackendProxyProtocol {
		r.buf = make([]byte, quicProxyHeaderMax+udpio.MaxDatagram)
	}
	return r
}

// Demultiplexing, per RFC 9443 (which updates RFC 7983's table for QUIC) as
// the first byte allows it. STUN is 0-3 and TURN ChannelData 64-79 (RFC
// 8656 §12: "0x4000 through 0x4FFF: These values are the allowed channel
// numbers"). QUIC sets the fixed bit (RFC 9000 §17.2: "The next bit (0x40)
// of byte 0 is set to 1, unless the packet is a Version Negotiation
// packet"), and long headers the header form bit ("The most significant
// bit (0x80) of byte 0 (the first byte) is set to 1 for long headers"):
// long headers are 192-255, short headers 64-127, which overlap
// ChannelData. What tells the overlap apart is the 5-tuple: a client with
// an allocation on this listener sends ChannelData, any other QUIC. 128-191
// (RTP/RTCP in RFC 7983, which this server does not serve) are long headers
// too: Version Negotiation, or a greased fixed bit (RFC 9287). Datagrams
// without the fixed bit (4-63, and STUN-range datagrams that are not STUN)
// can be QUIC only from an endpoint that greases the bit, so they go to a
// flow that exists but open none. (A backend that offers grease_quic_bit
// lets clients send such packets; quic-go does not.)

// channelData is the listener's branch for a first byte of 64-79 with QUIC
// sharing on: the ChannelData of an allocation is relayed as
// relayChannelDataAt does (one table lookup, as without QUIC), anything
// else is QUIC from a client without an allocation. HOT: allocates nothing.
func (r *quicReader) channelData(ft allocations.FiveTuple, pkt []byte, now time.Time, tx *txRun) {
	s := r.q.s
	a := s.table.Get(ft)
	if a == nil {
		r.forward(ft.Client, pkt, now, true)
		return
	}
	number, payload, err := proto.ParseChannelData(pkt)
	if err != nil {
		s.stats.drop(DropMalformed)
		return
	}
	s.relayChannelDataOf(a, number, payload, now, tx)
}

// notSTUN is the listener's branch for a first byte of 0-3 with QUIC
// sharing on: a datagram that is not a STUN message (no magic cookie) from
// a client with a flow is forwarded, and true returned. HOT.
func (r *quicReader) notSTUN(from netip.AddrPort, pkt []byte, now time.Time) bool {
	if stun.IsMessage(pkt) {
		return false
	}
	r.forward(from, pkt, now, false)
	return true
}

// other is the listener's branch for every first byte that is neither STUN
// nor ChannelData: QUIC, forwarded on the client's flow. HOT.
func (r *quicReader) other(from netip.AddrPort, pkt []byte, now time.Time) {
	b := pkt[0]
	open := b&quicFixedBit != 0 && (b&quicLongHeader == 0 || len(pkt) >= quicMinInitial)
	r.forward(from, pkt, now, open)
}

// forward sends a client's datagram to the backend on its flow, opening
// one first if open says the datagram may (and the caps allow). HOT in
// steady state: a map lookup under an uncontended mutex, and one sendmsg.
func (r *quicReader) forward(from netip.AddrPort, pkt []byte, now time.Time, open bool) {
	s := r.q.s
	mono := s.mono(now)
	r.mu.Lock()
	f := r.flows[from]
	if f != nil {
		f.last = mono
	}
	r.mu.Unlock()
	if f == nil {
		if !open {
			s.stats.drop(DropNoAllocation) // neither TURN nor the start of a QUIC flow
			return
		}
		if f = r.open(from, mono); f == nil {
			return
		}
	}
	dgram := pkt
	if f.hdr != nil {
		n := copy(r.buf, f.hdr)
		dgram = r.buf[:n+copy(r.buf[n:], pkt)]
	}
	if err := r.sendBackend(f, dgram); err != nil {
		s.stats.drop(DropWriteFailed)
	}
}

// sendBackend sends dgram on f's backend socket without waiting: the
// listener goroutine serves every client. Linux's sendmsg takes the
// (connected) backend's address as destination; elsewhere, where the send
// goes through the net package, a connected socket takes none.
func (r *quicReader) sendBackend(f *quicFlow, dgram []byte) error {
	if udpio.Batched {
		return r.snd.Send(f.out.socket(), dgram, nil, r.q.backend)
	}
	_, err := f.conn.Write(dgram)
	return err
}

// open opens a flow for client, within the caps, and starts its goroutine;
// nil when over a cap, shutting down, or the socket could not be made.
func (r *quicReader) open(client netip.AddrPort, mono int64) *quicFlow {
	q, s := r.q, r.q.s
	key := clientKey(client.Addr())
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return nil
	case q.cfg.MaxFlows > 0 && len(q.flows) >= q.cfg.MaxFlows,
		q.cfg.MaxFlowsPerClient > 0 && q.perClient[key] >= q.cfg.MaxFlowsPerClient:
		q.mu.Unlock()
		s.stats.drop(DropQUICFlowLimit)
		return nil
	}
	// The socket is made under mu (a flow's opening, not per packet) so
	// that shutdown, which takes mu, sees every flow it must close.
	f, err := r.newFlow(client, key, mono)
	if err != nil {
		q.mu.Unlock()
		s.stats.drop(DropWriteFailed)
		q.warn("QUIC backend: cannot open a flow; check [web] quic_backend", "backend", q.backend.String(), "err", err)
		return nil
	}
	q.flows[f] = struct{}{}
	q.perClient[key]++
	q.wg.Add(1)
	q.mu.Unlock()
	q.opened.Add(1)
	// In the map before the goroutine runs, so that its removal on exit
	// always finds it.
	r.mu.Lock()
	r.flows[client] = f
	r.mu.Unlock()
	go f.run()
	return f
}

// newFlow makes f's backend socket and PROXY header.
func (r *quicReader) newFlow(client netip.AddrPort, key netip.Prefix, mono int64) (*quicFlow, error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.q.backend))
	if err != nil {
		return nil, fmt.Errorf("dial %v: %w", r.q.backend, err)
	}
	out, err := newUDPOut(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	f := &quicFlow{r: r, client: client, key: key, conn: conn, out: out, last: mono}
	if r.q.cfg.BackendProxyProtocol {
		if f.hdr, err = quicProxyHeader(client, r.so.l.local); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	return f, nil
}

// quicProxyHeader is the PROXY v2 header of datagrams from client to the
// listener at local. A dual-stack listener's unspecified address ("::")
// becomes 0.0.0.0 for an IPv4 client, so the header is UDP over IPv4.
func quicProxyHeader(client, local netip.AddrPort) ([]byte, error) {
	if client.Addr().Is4() && (local.Addr().IsUnspecified() || local.Addr().Is4In6()) {
		ip := local.Addr().Unmap()
		if !ip.Is4() {
			ip = netip.IPv4Unspecified()
		}
		local = netip.AddrPortFrom(ip, local.Port())
	}
	h := proxyproto.HeaderProxyFromAddrs(2, net.UDPAddrFromAddrPort(client), net.UDPAddrFromAddrPort(local))
	b, err := h.Format()
	if err != nil {
		return nil, fmt.Errorf("PROXY header for %v: %w", client, err)
	}
	return b, nil
}

// clientKey is what MaxFlowsPerClient counts by: an IPv4 address, or the
// /64 of an IPv6 address (one subscriber's prefix, RFC 6177).
func clientKey(ip netip.Addr) netip.Prefix {
	ip = ip.WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// run relays the backend's datagrams to the client until the flow has been
// idle for QUICConfig.IdleTimeout or is closed. Idleness is checked only
// when the read deadline passes, so a busy flow never touches its timer.
// Only the client's datagrams keep a flow alive (RFC 4787 REQ-6, outbound
// refresh): a backend cannot hold a flow open by itself.
func (f *quicFlow) run() {
	q, s := f.r.q, f.r.q.s
	defer q.wg.Done()
	defer f.end()
	buf := make([]byte, quicMaxDatagram+1) // one byte more tells a larger datagram
	snd := udpio.NewSender()
	snd.Zones = s.zones
	idle := q.cfg.IdleTimeout
	_ = f.conn.SetReadDeadline(time.Now().Add(idle))
	for {
		n, err := f.conn.Read(buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if f.expire(idle) {
				q.expired.Add(1)
				return
			}
			continue
		case err != nil && udpio.Transient(err):
			// ECONNREFUSED: an ICMP port unreachable for an earlier
			// datagram, the backend is not listening.
			q.warn("QUIC backend refuses datagrams (ICMP port unreachable): is it running? check [web] quic_backend",
				"backend", q.backend.String(), "err", err)
			continue
		case err != nil:
			return // closed
		case n > quicMaxDatagram:
			s.stats.drop(DropTooLarge)
			continue
		}
		if err := snd.Send(f.r.so.out.socket(), buf[:n], nil, f.client); err != nil {
			s.stats.drop(DropWriteFailed)
		}
	}
}

// expire reports whether the flow has been idle for idle, and then takes
// it out of its reader's map (under the map's lock, so that a datagram the
// reader forwards either refreshed it before or opens a new flow after);
// otherwise it moves the read deadline to the new end of the idle time.
func (f *quicFlow) expire(idle time.Duration) bool {
	s := f.r.q.s
	now := s.mono(time.Now())
	f.r.mu.Lock()
	last := f.last
	gone := now-last >= int64(idle)
	if gone && f.r.flows[f.client] == f {
		delete(f.r.flows, f.client)
	}
	f.r.mu.Unlock()
	if !gone {
		_ = f.conn.SetReadDeadline(s.epoch.Add(time.Duration(last) + idle))
	}
	return gone
}

// end releases the flow: its map entry, its socket and its caps' counts.
func (f *quicFlow) end() {
	f.r.mu.Lock()
	if f.r.flows[f.client] == f {
		delete(f.r.flows, f.client)
	}
	f.r.mu.Unlock()
	_ = f.conn.Close()
	q := f.r.q
	q.mu.Lock()
	delete(q.flows, f)
	if q.perClient[f.key]--; q.perClient[f.key] <= 0 {
		delete(q.perClient, f.key)
	}
	q.mu.Unlock()
}

// close ends every flow and waits for their goroutines; no flow opens
// after it. It is a shutdown closer, run after the listener sockets close.
func (q *quicRelay) close() error {
	q.mu.Lock()
	q.closed = true
	conns := make([]*net.UDPConn, 0, len(q.flows))
	for f := range q.flows {
		conns = append(conns, f.conn)
	}
	q.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	q.wg.Wait()
	return nil
}

// warn logs a problem with the backend at most once per quicLogEvery.
func (q *quicRelay) warn(msg string, args ...any) {
	now := q.s.mono(time.Now())
	last := q.lastWarn.Load()
	if last != 0 && now-last < int64(quicLogEvery) || !q.lastWarn.CompareAndSwap(last, now) {
		return
	}
	q.s.log.Warn(msg, args...)
}

// QUICStats reports UDP sharing with the QUIC backend (all zero when off).
func (s *Server) QUICStats() QUICStats {
	q := s.quic
	if q == nil {
		return QUICStats{}
	}
	q.mu.Lock()
	n := len(q.flows)
	q.mu.Unlock()
	return QUICStats{Flows: n, Opened: q.opened.Load(), Expired: q.expired.Load()}
}
