package allocations

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors returned by Permit and BindChannel. They are wrapped with context;
// test with errors.Is.
var (
	// ErrBadChannel: the channel number is outside 0x4000-0x4FFF
	// (RFC 8656 §12.2: 400 Bad Request).
	ErrBadChannel = errors.New("invalid channel number")
	// ErrChannelConflict: the number is bound (or cooling) to another peer,
	// or the peer to another number (RFC 8656 §12.2: 400 Bad Request).
	ErrChannelConflict = errors.New("channel binding conflict")
	// ErrBadPeer: the peer address is invalid (400 Bad Request).
	ErrBadPeer = errors.New("invalid peer address")
	// ErrCapacity: the allocation holds MaxPermissions permissions or
	// MaxChannels channel bindings, or the table holds Config.TotalQuota
	// allocations (RFC 8656 §7.2, §10.2, §12.2: 508 Insufficient Capacity).
	ErrCapacity = errors.New("insufficient capacity")
)

// Protocol constants.
const (
	// PermissionLifetime: RFC 8656 §9: "The Permission Lifetime MUST be
	// 300 seconds (= 5 minutes)."
	PermissionLifetime = 300 * time.Second
	// ChannelLifetime: RFC 8656 §12: "A channel binding lasts for 10 minutes
	// unless refreshed."
	ChannelLifetime = 10 * time.Minute
	// ChannelQuarantine: RFC 8656 §12: "To prevent race conditions, the
	// client MUST wait 5 minutes after a channel binding expires before
	// attempting to bind the channel number to a different transport address
	// or the transport address to a different channel number." The server
	// enforces the same wait, so a delayed or retransmitted ChannelBind can
	// never redirect a number that the peer may still be using.
	ChannelQuarantine = 5 * time.Minute

	// MinChannel and MaxChannel bound the channel numbers a client may
	// bind (RFC 8656 §12: 0x4000 through 0x4FFF).
	MinChannel = 0x4000
	MaxChannel = 0x4FFF

	// MaxPermissions and MaxChannels cap one allocation's lists, which the
	// packet path scans linearly.
	MaxPermissions = 256
	MaxChannels    = 256
)

// ClientSink is how relayed data reaches the client: the UDP listener socket
// (WriteToUDPAddrPort) or the stream connection's writer. HOT: it must not
// block and should not allocate.
type ClientSink interface {
	WriteToClient(frame []byte) error
}

// TCPRelay is the relay state of a TCP allocation (RFC 6062): the
// listening socket on the relayed address and the data connections to
// peers. Close ends them all.
type TCPRelay interface {
	io.Closer
	// Addr is the local address of the listening socket.
	Addr() net.Addr
}

// Allocation is one TURN allocation (RFC 8656 §2.2). The exported fields are
// set by the caller before Table.Create and never change afterwards; the
// expiry, permissions and channels are safe for concurrent use.
type Allocation struct {
	FiveTuple FiveTuple
	Username  string // USERNAME as sent, for logs
	User      string // quota key
	Key       []byte // long-term key that authenticated the Allocate; later requests must use it
	Relayed   netip.AddrPort
	Conn      *net.UDPConn // relay socket; closed by the table on removal
	// Raw is Conn's syscall.RawConn, made once by the caller: the relay
	// sends through it on the packet path (Conn.SyscallConn allocates).
	Raw syscall.RawConn
	// TCP is the relay of a TCP allocation (RFC 6062), whose relayed
	// address is a listening TCP socket; Conn and Raw are nil then. nil
	// for UDP allocations, so the packet path never looks at it. The
	// table closes it on removal, like Conn, and releases its port.
	TCP     TCPRelay
	Sink    ClientSink
	Created time.Time // set by Create if zero
	// TransactionID is the Allocate request's, so that a retransmission
	// of it gets the same success response (RFC 8656 §7.2).
	TransactionID [12]byte
	// ID is assigned by Create: unique in the table, for admin tools.
	ID uint64
	// Half6 is the IPv6 half of a dual allocation (RFC 8656 §7.2,
	// ADDITIONAL-ADDRESS-FAMILY): Relayed, Conn and Raw are then its IPv4
	// half. It is nil for an allocation of one family, whichever it is (an
	// IPv6-only allocation has its address in Relayed). The halves of a
	// dual allocation expire, and may be deleted, one at a time (RFC 8656
	// §8.1, see RefreshFamily and Table.DeleteFamily): a half's socket is
	// then closed and its port released, while the fields keep their
	// values.
	Half6 *Half6

	// ToPeer and ToClient count what the relay forwarded each way. The
	// packet path adds to them atomically: each allocation has its own, so
	// there is no sharing between allocations.
	ToPeer, ToClient Counter

	// DontFragment is set while Conn sends with the DF bit (RFC 8656 §7.2,
	// §11.2): from creation when the Allocate carried DONT-FRAGMENT, or
	// from the first Send indication that did. ErrQueued is set by a
	// sender whose send on Conn reported an ICMP error queued on the
	// socket, so that the relay loop reads the socket's error queue (§11.5;
	// see package relay).
	DontFragment, ErrQueued atomic.Bool

	table   *Table                // set once by Create, before publication
	limits  *allocLimits          // set once by Create; nil when no bandwidth limit is configured
	expires atomic.Int64          // unix nanoseconds; of a dual allocation, the later of its live halves
	state   atomic.Pointer[state] // nil: no permissions, no channels

	mu sync.Mutex
	// mu guards the following, and serialises writers of state.
	done    chan struct{} // made on first Done call
	removed bool
}

// Half6 is the IPv6 relayed address of a dual allocation and its socket
// (see Allocation.Half6), with the state of both halves. The exported
// fields are set by the caller before Table.Create and never change.
type Half6 struct {
	Relayed netip.AddrPort
	Conn    *net.UDPConn // closed by the table when the half or the allocation goes
	Raw     syscall.RawConn
	// ErrQueued is Allocation.ErrQueued for this half's socket.
	ErrQueued atomic.Bool

	// halves holds the expiry of each half (index halfPrimary: the
	// Allocation's Relayed; halfIPv6: this one), 0 once the half is gone.
	// Written under the allocation's mu.
	halves [2]atomic.Int64
	// closing: the table is closing the sockets, no half may be dropped
	// any more. Guarded by the allocation's mu.
	closing bool
}

// allocLimits are an allocation's own byte-rate limiters and its user's,
// shared with the user's other allocations.
type allocLimits struct {
	own  Limits
	user *Limits // nil: no per-user limit
}

// AllowToPeer spends n bytes of the allocation's and its user's bandwidth
// toward peers at now (monotonic nanoseconds), reporting whether the packet
// may go. HOT: lock-free, no allocation.
func (a *Allocation) AllowToPeer(n int, now int64) bool { return a.allow(toPeer, n, now) }

// AllowToClient is AllowToPeer for the other direction.
func (a *Allocation) AllowToClient(n int, now int64) bool { return a.allow(toClient, n, now) }

func (a *Allocation) allow(d direction, n int, now int64) bool {
	l := a.limits
	if l == nil {
		return true
	}
	var user *ByteRate
	if l.user != nil {
		user = l.user.of(d)
	}
	return l.own.of(d).Allow(n, now) && user.Allow(n, now)
}

// Counter counts relayed packets and bytes in one direction.
type Counter struct {
	packets, bytes atomic.Uint64
}

// Add counts one packet of n bytes. HOT: lock-free, no allocation.
func (c *Counter) Add(n int) {
	c.packets.Add(1)
	c.bytes.Add(uint64(n))
}

// AddN counts packets packets of bytes bytes in all.
func (c *Counter) AddN(packets, bytes uint64) {
	c.packets.Add(packets)
	c.bytes.Add(bytes)
}

// Load returns the packets and bytes counted so far.
func (c *Counter) Load() (packets, bytes uint64) {
	return c.packets.Load(), c.bytes.Load()
}

// state is an immutable snapshot of permissions and channels. Each list
// holds at most one entry per IP (permissions) and per number and per peer
// (channels, live or cooling), so readers can stop at the first match.
type state struct {
	perms []permission
	chans []channel
	next  int64 // earliest time an entry can be pruned
}

type permission struct {
	ip      netip.Addr // unmapped
	expires int64
}

type channel struct {
	peer    netip.AddrPort // address unmapped
	expires int64          // end of the binding; the quarantine runs ChannelQuarantine more
	number  uint16
}

const quarantine = int64(ChannelQuarantine)

// now is the table's clock, or time.Now for an allocation not yet created.
func (a *Allocation) now() time.Time {
	if a.table != nil {
		return a.table.cfg.Now()
	}
	return time.Now()
}

// Expires returns when the allocation expires.
func (a *Allocation) Expires() time.Time {
	return time.Unix(0, a.expires.Load())
}

// Refresh sets the expiry to lifetime from now (table clock), of both
// halves of a dual allocation. It copies nothing. RFC 8656 §7: a Refresh
// with lifetime 0 deletes the allocation; callers do that with
// Table.Delete, since Refresh(0) only leaves it for the next Sweep.
func (a *Allocation) Refresh(lifetime time.Duration) {
	exp := a.now().Add(lifetime).UnixNano()
	if d := a.Half6; d != nil {
		a.mu.Lock()
		defer a.mu.Unlock()
		for i := range d.halves {
			if d.halves[i].Load() != 0 {
				d.halves[i].Store(exp)
			}
		}
	}
	a.expires.Store(exp)
}

// Indexes of Half6.halves.
const (
	halfPrimary = 0 // Relayed, Conn: IPv4 in a dual allocation
	halfIPv6    = 1 // Half6
)

// halfOf returns the index of the half of a dual allocation that relays
// to the family of ip (IPv4 when ip.Is4()).
func halfOf(ip netip.Addr) int {
	if ip.Is4() {
		return halfPrimary
	}
	return halfIPv6
}

// Dual reports whether the allocation was made with two relayed addresses,
// IPv4 in Relayed and IPv6 in Half6 (either may since be gone: see
// HasFamily).
func (a *Allocation) Dual() bool { return a.Half6 != nil }

// HasFamily reports whether the allocation has a live relayed address of
// ip's family: IPv4 when ip.Is4(), IPv6 otherwise (an IPv4-mapped address
// is IPv6 as far as families go, RFC 8656 §9.1 and §12.1 compare what was
// sent). RFC 8656 §10.2, §12.2: a peer of another family gets 443.
func (a *Allocation) HasFamily(ip netip.Addr) bool {
	if a.Half6 == nil {
		return a.Relayed.Addr().Is4() == ip.Is4()
	}
	return a.Half6.halves[halfOf(ip)].Load() != 0
}

// RelayedAddrs returns the allocation's live relayed addresses: Relayed,
// and Half6.Relayed for a dual allocation, less a half that is gone.
func (a *Allocation) RelayedAddrs() []netip.AddrPort {
	d := a.Half6
	if d == nil {
		return []netip.AddrPort{a.Relayed}
	}
	var out []netip.AddrPort
	if d.halves[halfPrimary].Load() != 0 {
		out = append(out, a.Relayed)
	}
	if d.halves[halfIPv6].Load() != 0 {
		out = append(out, d.Relayed)
	}
	return out
}

// RefreshFamily is Refresh for the half of the allocation that relays to
// ip's family only (RFC 8656 §8.1: "When refreshing a dual allocation,
// the client includes a REQUESTED-ADDRESS-FAMILY attribute indicating the
// address family type that should be refreshed"). It reports false, and
// changes nothing, when the allocation has no live half of that family.
func (a *Allocation) RefreshFamily(ip netip.Addr, lifetime time.Duration) bool {
	d := a.Half6
	if d == nil {
		if !a.HasFamily(ip) {
			return false
		}
		a.Refresh(lifetime)
		return true
	}
	exp := a.now().Add(lifetime).UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	h := &d.halves[halfOf(ip)]
	if h.Load() == 0 {
		return false
	}
	h.Store(exp)
	a.expires.Store(max(d.halves[halfPrimary].Load(), d.halves[halfIPv6].Load()))
	return true
}

// ConnFor returns the relay socket that sends to peer: the IPv6 half's to
// an IPv6 peer of a dual allocation, else Conn. HOT: no lock, no
// allocation.
func (a *Allocation) ConnFor(peer netip.Addr) (*net.UDPConn, syscall.RawConn, *atomic.Bool) {
	if d := a.Half6; d != nil && !peer.Is4() && !peer.Is4In6() {
		return d.Conn, d.Raw, &d.ErrQueued
	}
	return a.Conn, a.Raw, &a.ErrQueued
}

// dropHalf takes half i out of a dual allocation whose other half lives
// on: its expiry becomes 0, and the permissions and channels of its family
// go (RFC 8656 §8.1: "Deleting a single allocation destroys any permissions
// or channels associated with that particular allocation; it MUST NOT
// affect any permissions or channels associated with allocations for the
// other address family"). With expired set, only a half whose expiry is at
// or before it is dropped (the janitor; a Refresh may have raced). It
// reports whether the half was dropped; the caller closes its socket.
func (a *Allocation) dropHalf(i int, expired int64) bool {
	d := a.Half6
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, other := d.halves[i].Load(), d.halves[1-i].Load()
	if d.closing || exp == 0 || other == 0 || (expired != 0 && exp > expired) {
		return false
	}
	d.halves[i].Store(0)
	a.expires.Store(other)
	if s := a.state.Load(); s != nil {
		v4 := i == halfPrimary
		var perms []permission
		for _, p := range s.perms {
			if p.ip.Is4() != v4 {
				perms = append(perms, p)
			}
		}
		var chans []channel
		for _, c := range s.chans {
			if c.peer.Addr().Is4() != v4 {
				chans = append(chans, c)
			}
		}
		a.state.Store(newState(perms, chans))
	}
	return true
}

// liveHalves returns the halves of a dual allocation not dropped, and
// keeps any from being dropped from now on: the table is removing a and
// closes them itself.
func (a *Allocation) liveHalves() []int {
	d := a.Half6
	a.mu.Lock()
	defer a.mu.Unlock()
	d.closing = true
	var out []int
	for i := range d.halves {
		if d.halves[i].Load() != 0 {
			out = append(out, i)
		}
	}
	return out
}

// halfConn returns the socket of half i.
func (a *Allocation) halfConn(i int) (*net.UDPConn, netip.AddrPort) {
	if i == halfIPv6 {
		return a.Half6.Conn, a.Half6.Relayed
	}
	return a.Conn, a.Relayed
}

// Done returns a channel closed when the allocation is removed from its table.
func (a *Allocation) Done() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done == nil {
		a.done = make(chan struct{})
		if a.removed {
			close(a.done)
		}
	}
	return a.done
}

// markRemoved closes Done, once.
func (a *Allocation) markRemoved() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.removed {
		return
	}
	a.removed = true
	if a.done != nil {
		close(a.done)
	}
}

// Permit installs or refreshes the permission for peer's IP for
// PermissionLifetime from now. RFC 8656 §9: permissions are keyed by IP
// address only; "port numbers are not considered". It fails with ErrCapacity
// when the allocation already has MaxPermissions other live permissions.
func (a *Allocation) Permit(peer netip.Addr, now time.Time) error {
	if !peer.IsValid() {
		return fmt.Errorf("allocations: permit %v: %w", peer, ErrBadPeer)
	}
	peer = peer.Unmap()
	n := now.UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.state.Load()
	var s state
	if old != nil {
		s = *old
	}
	perms, err := withPermission(s.perms, peer, n)
	if err != nil {
		return err
	}
	a.state.Store(newState(perms, s.chans))
	return nil
}

// withPermission returns a copy of perms without expired entries, with ip's
// permission installed or refreshed.
func withPermission(perms []permission, ip netip.Addr, n int64) ([]permission, error) {
	out := make([]permission, 0, len(perms)+1)
	for _, p := range perms {
		if p.expires > n && p.ip != ip {
			out = append(out, p)
		}
	}
	if len(out) >= MaxPermissions {
		return nil, fmt.Errorf("allocations: permit %v: %d permissions: %w", ip, len(out), ErrCapacity)
	}
	return append(out, permission{ip: ip, expires: n + int64(PermissionLifetime)}), nil
}

// Permitted reports whether peer's IP has a live permission. HOT: lock-free,
// no allocation.
func (a *Allocation) Permitted(peer netip.Addr, now time.Time) bool {
	s := a.state.Load()
	if s == nil {
		return false
	}
	peer = peer.Unmap()
	for i := range s.perms {
		if s.perms[i].ip == peer {
			return s.perms[i].expires > now.UnixNano()
		}
	}
	return false
}

// BindChannel creates or refreshes the binding of number to peer for
// ChannelLifetime from now, and installs or refreshes the permission for
// peer's IP.
//
// RFC 8656 §12.2: the server checks that "the channel number is in the range
// 0x4000 through 0x4FFF (inclusive)" (else ErrBadChannel), "the channel
// number is not currently bound to a different transport address (same
// transport address is OK)" and "the transport address is not currently
// bound to a different channel number" (else ErrChannelConflict). Here a
// binding counts as bound until ChannelQuarantine after it expires (see
// ChannelQuarantine). "If the server can satisfy the request, then the
// server creates or refreshes the channel binding ... The server also
// installs or refreshes a permission for the IP address in the
// XOR-PEER-ADDRESS attribute as described in Section 9."
func (a *Allocation) BindChannel(number uint16, peer netip.AddrPort, now time.Time) error {
	if number < MinChannel || number > MaxChannel {
		return fmt.Errorf("allocations: bind channel 0x%04x to %v: %w", number, peer, ErrBadChannel)
	}
	if !peer.IsValid() {
		return fmt.Errorf("allocations: bind channel 0x%04x to %v: %w", number, peer, ErrBadPeer)
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	n := now.UnixNano()

	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.state.Load()
	var s state
	if old != nil {
		s = *old
	}
	chans := make([]channel, 0, len(s.chans)+1)
	for _, c := range s.chans {
		if c.expires+quarantine <= n {
			continue // past its quarantine: forgotten
		}
		switch {
		case c.number == number && c.peer == peer:
			continue // refreshed below
		case c.number == number:
			return fmt.Errorf("allocations: bind channel 0x%04x to %v: channel 0x%04x %s %v: %w",
				number, peer, number, boundTo(c, n), c.peer, ErrChannelConflict)
		case c.peer == peer:
			return fmt.Errorf("allocations: bind channel 0x%04x to %v: peer %v %s channel 0x%04x: %w",
				number, peer, peer, boundTo(c, n), c.number, ErrChannelConflict)
		}
		chans = append(chans, c)
	}
	if len(chans) >= MaxChannels {
		return fmt.Errorf("allocations: bind channel 0x%04x to %v: %d channels: %w",
			number, peer, len(chans), ErrCapacity)
	}
	perms, err := withPermission(s.perms, peer.Addr(), n)
	if err != nil {
		return err
	}
	chans = append(chans, channel{peer: peer, expires: n + int64(ChannelLifetime), number: number})
	a.state.Store(newState(perms, chans))
	return nil
}

// boundTo describes an existing binding, live or cooling, for an error message.
func boundTo(c channel, n int64) string {
	if c.expires > n {
		return "is bound to"
	}
	return "was bound until " + time.Unix(0, c.expires).UTC().Format(time.RFC3339) +
		", quarantined until " + time.Unix(0, c.expires+quarantine).UTC().Format(time.RFC3339) + ", to"
}

// ChannelPeer returns the peer bound to channel number, if the binding is
// live (not expired, not cooling). HOT: lock-free, no allocation. It does
// not check the permission: RFC 8656 §12.6 relays a client's ChannelData on
// the binding alone, while data from the peer needs Permitted too.
func (a *Allocation) ChannelPeer(number uint16, now time.Time) (netip.AddrPort, bool) {
	s := a.state.Load()
	if s == nil {
		return netip.AddrPort{}, false
	}
	for i := range s.chans {
		if s.chans[i].number == number {
			if s.chans[i].expires > now.UnixNano() {
				return s.chans[i].peer, true
			}
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPort{}, false
}

// PeerChannel returns the channel number bound to peer, if the binding is
// live. HOT: lock-free, no allocation.
func (a *Allocation) PeerChannel(peer netip.AddrPort, now time.Time) (uint16, bool) {
	s := a.state.Load()
	if s == nil {
		return 0, false
	}
	if peer.Addr().Is4In6() {
		peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	}
	for i := range s.chans {
		if s.chans[i].peer == peer {
			if s.chans[i].expires > now.UnixNano() {
				return s.chans[i].number, true
			}
			return 0, false
		}
	}
	return 0, false
}

// Route answers, from one snapshot, what the relay needs for a datagram
// from peer: whether a permission for its IP is live, and the channel bound
// to it, if any (RFC 8656 §11.3, §12). HOT: lock-free, no allocation.
func (a *Allocation) Route(peer netip.AddrPort, now time.Time) (permitted bool, channel uint16, bound bool) {
	s := a.state.Load()
	if s == nil {
		return false, 0, false
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	t := now.UnixNano()
	for i := range s.perms {
		if s.perms[i].ip == peer.Addr() {
			permitted = s.perms[i].expires > t
			break
		}
	}
	if !permitted {
		return false, 0, false
	}
	for i := range s.chans {
		if s.chans[i].peer == peer {
			if s.chans[i].expires > t {
				return true, s.chans[i].number, true
			}
			break
		}
	}
	return true, 0, false
}

// prune drops expired permissions and channels past their quarantine. The
// lock-free check keeps the common case (nothing due) to one atomic load.
func (a *Allocation) prune(n int64) {
	if s := a.state.Load(); s == nil || s.next > n {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.state.Load()
	if s == nil || s.next > n {
		return
	}
	var perms []permission
	for _, p := range s.perms {
		if p.expires > n {
			perms = append(perms, p)
		}
	}
	var chans []channel
	for _, c := range s.chans {
		if c.expires+quarantine > n {
			chans = append(chans, c)
		}
	}
	a.state.Store(newState(perms, chans))
}

// newState builds a snapshot, or nil when both lists are empty so that an
// idle allocation holds no state memory.
func newState(perms []permission, chans []channel) *state {
	if len(perms) == 0 && len(chans) == 0 {
		return nil
	}
	s := &state{perms: perms, chans: chans, next: 1<<63 - 1}
	for _, p := range perms {
		s.next = min(s.next, p.expires)
	}
	for _, c := range chans {
		s.next = min(s.next, c.expires+quarantine)
	}
	return s
}

// Limited reports whether the allocation has a bandwidth limit (its own or
// its user's), which every packet must then be checked against.
func (a *Allocation) Limited() bool { return a.limits != nil }

// LiveChannel is a channel binding whose peer also has a live permission.
type LiveChannel struct {
	Number uint16
	Peer   netip.AddrPort
	// Until is the earliest of the binding's, the permission's and the
	// allocation's expiry: until then the relay forwards the channel's
	// data both ways without a request changing anything.
	Until time.Time
}

// LiveChannels returns the channel bindings live at now whose peer has a
// live permission, appended to dst.
func (a *Allocation) LiveChannels(dst []LiveChannel, now time.Time) []LiveChannel {
	s := a.state.Load()
	if s == nil {
		return dst
	}
	t := now.UnixNano()
	end := a.expires.Load()
	for _, c := range s.chans {
		if c.expires <= t {
			continue
		}
		for _, p := range s.perms {
			if p.ip == c.peer.Addr() && p.expires > t {
				dst = append(dst, LiveChannel{Number: c.number, Peer: c.peer, Until: time.Unix(0, min(c.expires, p.expires, end))})
				break
			}
		}
	}
	return dst
}
