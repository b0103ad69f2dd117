package relay

import (
	"cmp"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
)

// DropReason says why the data plane discarded a packet.
type DropReason uint8

// Reasons for dropping a packet.
const (
	DropNoAllocation DropReason = iota // data on a 5-tuple with no allocation
	DropNoPermission                   // no permission or channel for the peer (RFC 8656 §11, §12)
	DropPolicy                         // the peer policy denies the address
	DropMalformed                      // undecodable ChannelData or Send indication
	DropTooLarge                       // a datagram too large for a Data indication
	DropOverload                       // the request queue was full
	DropWriteFailed                    // the client or peer socket refused the write
	DropRateLimited                    // an unauthenticated client's answer over its rate limit
	DropBandwidth                      // over the allocation's or user's bandwidth limit
	DropConnLimit                      // a TCP/TLS connection over max_conns or max_conns_per_ip
	DropOwnAddress                     // to one of the server's own addresses outside the relay ports (self.go)
	// DropQUICFlowLimit: a datagram that would open a QUIC flow over
	// QUICConfig.MaxFlows or MaxFlowsPerClient (quic.go).
	DropQUICFlowLimit
	numDropReasons
)

var dropNames = [numDropReasons]string{"no_allocation", "no_permission", "policy", "malformed", "too_large", "overload", "write_failed", "rate_limited", "bandwidth", "conn_limit", "own_address", "quic_flow_limit"}

// String returns the reason as a metric label value.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// AuthFailure says why a request that carried credentials was refused.
type AuthFailure uint8

// Reasons for an authentication failure. A stale nonce is not one: it is
// the normal way a client learns a fresh nonce (Stats.StaleNonces).
const (
	AuthNoUsername   AuthFailure = iota // USERNAME missing or too long
	AuthUnknownUser                     // neither a static user nor a REST username
	AuthExpired                         // a REST credential past its expiry
	AuthBadIntegrity                    // wrong password, key or realm
	AuthOther                           // anything else auth.Verify reports
	numAuthFailures
)

var authFailureNames = [numAuthFailures]string{"no_username", "unknown_user", "expired", "bad_integrity", "other"}

// String returns the reason as a metric label value.
func (f AuthFailure) String() string {
	if f < numAuthFailures {
		return authFailureNames[f]
	}
	return "unknown"
}

// authFailureOf classifies an error of auth.Verify.
func authFailureOf(err error) AuthFailure {
	switch {
	case errors.Is(err, auth.ErrNoUsername):
		return AuthNoUsername
	case errors.Is(err, auth.ErrUnknownUser):
		return AuthUnknownUser
	case errors.Is(err, auth.ErrExpired):
		return AuthExpired
	case errors.Is(err, auth.ErrBadIntegrity):
		return AuthBadIntegrity
	}
	return AuthOther
}

// requestMethods are the STUN methods counted one by one; any other method
// counts as "other".
var requestMethods = [...]stun.Method{
	stun.MethodBinding, stun.MethodAllocate, stun.MethodRefresh,
	stun.MethodCreatePermission, stun.MethodChannelBind,
}

// methodIndex returns m's index in requestMethods, or len(requestMethods).
func methodIndex(m stun.Method) int {
	for i, k := range requestMethods {
		if k == m {
			return i
		}
	}
	return len(requestMethods)
}

// requestMethodNames are the labels of requestMethods and of "other".
// (stun.Method.String builds a map on every call: too dear per request.)
var requestMethodNames = [len(requestMethods) + 1]string{
	"Binding", "Allocate", "Refresh", "CreatePermission", "ChannelBind", "other",
}

// methodName returns the metric label of requestMethods[i].
func methodName(i int) string {
	return requestMethodNames[min(i, len(requestMethods))]
}

// stats are the server-wide counters. Per-allocation traffic lives in each
// Allocation; what ended allocations relayed is folded in here. Everything
// but the drops and the per-allocation traffic is counted on the control
// plane (requests, handshakes, allocation creation and removal), so the
// mutex below is never taken per packet.
type stats struct {
	drops         [numDropReasons]atomic.Uint64
	created       atomic.Uint64
	ended         [4]atomic.Uint64 // by allocations.Reason
	endedToPeer   allocations.Counter
	endedToClient allocations.Counter
	authFailures  [numAuthFailures]atomic.Uint64
	staleNonces   atomic.Uint64
	requests      [len(requestMethods) + 1]atomic.Uint64 // by methodIndex
	tlsOK         atomic.Uint64
	tlsFailed     atomic.Uint64

	// recent keeps the last few authentication failures for the admin
	// dashboard; it has its own lock, taken only on a failed auth.Verify.
	recent authRing

	mu sync.Mutex
	// mu guards the following.
	lastToPeer, lastToClient Traffic
	byListener               map[listenerKey]*listenerCounts
	requestErrors            map[RequestError]uint64
}

// listenerKey identifies a listener and a transport it serves (a tcp+tls
// listener serves two).
type listenerKey struct {
	server    netip.AddrPort
	transport allocations.Transport
}

type listenerCounts struct {
	created uint64
	ended   [4]uint64 // by allocations.Reason
}

// monotonic raises st's traffic totals to at least the last ones reported.
func (s *stats) monotonic(st *Stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.ToPeer = maxTraffic(st.ToPeer, s.lastToPeer)
	st.ToClient = maxTraffic(st.ToClient, s.lastToClient)
	s.lastToPeer, s.lastToClient = st.ToPeer, st.ToClient
}

func maxTraffic(a, b Traffic) Traffic {
	return Traffic{Packets: max(a.Packets, b.Packets), Bytes: max(a.Bytes, b.Bytes)}
}

func (s *stats) drop(r DropReason) { s.drops[r].Add(1) }

// authFailed counts a failed auth.Verify.
func (s *stats) authFailed(err error) { s.authFailures[authFailureOf(err)].Add(1) }

// RecentAuthFailures is how many authentication failures the server
// remembers for the admin dashboard (Server.RecentAuthFailures): enough to
// see a misconfigured client or a password guesser at a glance, few enough
// that a flood of bad credentials costs a fixed amount of memory.
const RecentAuthFailures = 32

// MaxRecentUsername bounds the USERNAME kept with a recent authentication
// failure, in bytes: the attribute may hold up to 509 bytes of whatever
// the client chose (RFC 8489 §14.3), and a dashboard needs only enough to
// recognise it.
const MaxRecentUsername = 64

// AuthFailureRecord is one failed authentication, as the admin dashboard
// shows it.
type AuthFailureRecord struct {
	Time   time.Time
	Client netip.AddrPort
	// Transport is the client's transport: "udp", "tcp" or "tls".
	Transport string
	// Reason is the AuthFailure label ("bad_integrity", ...).
	Reason string
	// Username is the USERNAME sent, cut to MaxRecentUsername bytes (at a
	// UTF-8 boundary, invalid bytes replaced), or "(userhash)" when the
	// client sent USERHASH instead (RFC 8489 §14.4). It is what the client
	// claimed, not a verified identity: show it escaped.
	Username string
}

// authRing is a fixed ring of the most recent authentication failures.
type authRing struct {
	mu   sync.Mutex
	buf  [RecentAuthFailures]AuthFailureRecord
	next int // where the next record goes
	n    int // how many are held, up to len(buf)
}

// add remembers rec, forgetting the oldest when full.
func (r *authRing) add(rec AuthFailureRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = rec
	r.next = (r.next + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
}

// list returns the records held, newest first.
func (r *authRing) list() []AuthFailureRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]AuthFailureRecord, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// rememberAuthFailure records a failed auth.Verify of req from ft in the
// ring of recent failures. It runs on the control plane only (request
// handling), after the counters: the data plane never calls it.
func (s *stats) rememberAuthFailure(now time.Time, ft allocations.FiveTuple, req *stun.Message, err error) {
	name := "(userhash)"
	if u, gerr := req.Get(stun.AttrUsername); gerr == nil {
		name = cutUsername(u)
	}
	s.recent.add(AuthFailureRecord{Time: now, Client: ft.Client, Transport: ft.Transport.String(),
		Reason: authFailureOf(err).String(), Username: name})
}

// cutUsername returns b as valid UTF-8 (invalid sequences replaced by
// U+FFFD) in at most MaxRecentUsername bytes, cut at a rune boundary.
func cutUsername(b []byte) string {
	if len(b) > MaxRecentUsername {
		b = b[:MaxRecentUsername]
		// Drop a rune the bound cut in half rather than mark it invalid.
		for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
			if utf8.RuneStart(b[i]) {
				if !utf8.FullRune(b[i:]) {
					b = b[:i]
				}
				break
			}
		}
	}
	u := strings.ToValidUTF8(string(b), "\uFFFD")
	if len(u) <= MaxRecentUsername {
		return u
	}
	i := MaxRecentUsername
	for i > 0 && !utf8.RuneStart(u[i]) {
		i--
	}
	return u[:i]
}

// RecentAuthFailures returns the last authentication failures (at most
// RecentAuthFailures of them), newest first.
func (s *Server) RecentAuthFailures() []AuthFailureRecord { return s.stats.recent.list() }

// request counts one STUN request of method m.
func (s *stats) request(m stun.Method) { s.requests[methodIndex(m)].Add(1) }

// requestError counts one error response.
func (s *stats) requestError(m stun.Method, code stun.ErrorCode) {
	k := RequestError{Method: methodName(methodIndex(m)), Code: int(code)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.requestErrors == nil {
		s.requestErrors = make(map[RequestError]uint64)
	}
	s.requestErrors[k]++
}

// tlsHandshake counts one finished TLS handshake, successful or not.
func (s *stats) tlsHandshake(ok bool) {
	if ok {
		s.tlsOK.Add(1)
	} else {
		s.tlsFailed.Add(1)
	}
}

// listenerLocked returns the counts of ft's listener and transport. s.mu
// must be held.
func (s *stats) listenerLocked(ft allocations.FiveTuple) *listenerCounts {
	k := listenerKey{server: ft.Server, transport: ft.Transport}
	if s.byListener == nil {
		s.byListener = make(map[listenerKey]*listenerCounts)
	}
	c := s.byListener[k]
	if c == nil {
		c = &listenerCounts{}
		s.byListener[k] = c
	}
	return c
}

// allocationCreated counts a new allocation of ft.
func (s *stats) allocationCreated(ft allocations.FiveTuple) {
	s.created.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listenerLocked(ft).created++
}

// allocationEnded counts the removal of a's allocation, and folds what it
// relayed into the totals.
func (s *stats) allocationEnded(a *allocations.Allocation, why allocations.Reason) {
	p, b := a.ToPeer.Load()
	s.endedToPeer.AddN(p, b)
	p, b = a.ToClient.Load()
	s.endedToClient.AddN(p, b)
	if int(why) >= len(s.ended) {
		return
	}
	s.ended[why].Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listenerLocked(a.FiveTuple).ended[why]++
}

// Traffic is packets and bytes relayed in one direction.
type Traffic struct {
	Packets, Bytes uint64
}

// RequestError identifies error responses: the request's method ("Allocate",
// ..., or "other") and the STUN error code answered.
type RequestError struct {
	Method string
	Code   int
}

// ListenerStats are the allocation counts of one listener and transport.
type ListenerStats struct {
	// Listener is the listener's kind and bound address, as in the
	// "listening" log line: "udp://[::]:3478", "tcp+tls://0.0.0.0:443".
	Listener string
	// Transport is the client transport: "udp", "tcp" or "tls".
	Transport string
	// Active is the number of live allocations.
	Active int
	// Created counts allocations made since start; Ended those removed,
	// by reason ("expired", "deleted", "closed").
	Created uint64
	Ended   map[string]uint64
}

// Stats is a snapshot of the server's counters, for metrics and admin.
// Everything in it is read or computed when Stats is called: counters are
// atomics or are updated on the control plane only, and gauges (active
// allocations, permissions, channels, relay ports) are counted from the
// allocation table.
type Stats struct {
	AllocationsActive  int
	AllocationsCreated uint64
	// AllocationsEnded counts ended allocations by why they ended.
	AllocationsEnded map[string]uint64
	// Listeners breaks allocations down by listener and transport, sorted
	// by listener then transport.
	Listeners []ListenerStats
	// Permissions and Channels are the live permissions and channel
	// bindings over every allocation.
	Permissions, Channels int
	// ToPeer and ToClient are totals over every allocation, live or ended.
	ToPeer, ToClient Traffic
	Drops            map[string]uint64
	// AuthFailures is the total of AuthFailuresByReason: requests with
	// credentials that did not verify.
	AuthFailures         uint64
	AuthFailuresByReason map[string]uint64
	// StaleNonces counts 438 answers: routine, a client refreshing its nonce.
	StaleNonces uint64
	// Requests counts STUN requests by method; RequestErrors the error
	// responses by method and code (401 challenges included).
	Requests      map[string]uint64
	RequestErrors map[RequestError]uint64
	// TLSHandshakes and TLSHandshakeFailures count finished TLS handshakes
	// on tls:// and tcp+tls:// listeners.
	TLSHandshakes, TLSHandshakeFailures uint64
	// RelayPorts is the relay port range; RelayPortsInUse counts relay
	// sockets by the local address they are bound on.
	RelayPorts      allocations.PortRange
	RelayPortsInUse map[netip.Addr]int
	// Usage counts the usage records of Config.Usage, when it is a
	// UsageCounter (package usage's writer is); zero otherwise.
	Usage UsageCounts
}

// Stats returns a snapshot of the server's counters. It walks the
// allocation table (lock-free) and takes the stats mutex briefly; the data
// plane pays nothing for it.
func (s *Server) Stats() Stats {
	st := Stats{
		AllocationsActive:    s.table.Len(),
		AllocationsCreated:   s.stats.created.Load(),
		AllocationsEnded:     map[string]uint64{},
		Drops:                map[string]uint64{},
		AuthFailuresByReason: map[string]uint64{},
		StaleNonces:          s.stats.staleNonces.Load(),
		Requests:             map[string]uint64{},
		RequestErrors:        map[RequestError]uint64{},
		TLSHandshakes:        s.stats.tlsOK.Load(),
		TLSHandshakeFailures: s.stats.tlsFailed.Load(),
		RelayPorts:           s.cfg.RelayPorts,
		RelayPortsInUse:      map[netip.Addr]int{},
	}
	if c, ok := s.cfg.Usage.(UsageCounter); ok {
		st.Usage = c.UsageCounts()
	}
	reasons := []allocations.Reason{allocations.ReasonExpired, allocations.ReasonDeleted, allocations.ReasonClosed}
	for _, r := range reasons {
		st.AllocationsEnded[r.String()] = s.stats.ended[r].Load()
	}
	for r := range numDropReasons {
		st.Drops[r.String()] = s.stats.drops[r].Load()
	}
	for f := range numAuthFailures {
		n := s.stats.authFailures[f].Load()
		st.AuthFailuresByReason[f.String()] = n
		st.AuthFailures += n
	}
	for i := range s.stats.requests {
		st.Requests[methodName(i)] = s.stats.requests[i].Load()
	}

	// Ended allocations are folded in just after they leave the table, so a
	// sum taken in between can come out low once: never report less than
	// before, so the totals stay monotonic counters.
	defer s.stats.monotonic(&st)
	st.ToPeer.Packets, st.ToPeer.Bytes = s.stats.endedToPeer.Load()
	st.ToClient.Packets, st.ToClient.Bytes = s.stats.endedToClient.Load()
	// Few distinct listeners and relay addresses exist: linear tallies are
	// cheaper per allocation than map updates.
	var active tally[listenerKey]
	var ports tally[netip.Addr]
	now := time.Now()
	s.table.Range(func(a *allocations.Allocation) bool {
		p, b := a.ToPeer.Load()
		st.ToPeer.Packets += p
		st.ToPeer.Bytes += b
		p, b = a.ToClient.Load()
		st.ToClient.Packets += p
		st.ToClient.Bytes += b
		perms, chans := a.CountLive(now)
		st.Permissions += perms
		st.Channels += chans
		active.add(listenerKey{server: a.FiveTuple.Server, transport: a.FiveTuple.Transport})
		if a.Conn != nil {
			if u, ok := a.Conn.LocalAddr().(*net.UDPAddr); ok {
				ports.add(u.AddrPort().Addr().Unmap())
			}
		} else if a.TCP != nil {
			if t, ok := a.TCP.Addr().(*net.TCPAddr); ok {
				ports.add(t.AddrPort().Addr().Unmap())
			}
		}
		if d := a.Half6; d != nil && a.HasFamily(netip.IPv6Unspecified()) {
			if u, ok := d.Conn.LocalAddr().(*net.UDPAddr); ok {
				ports.add(u.AddrPort().Addr())
			}
		}
		return true
	})

	for _, e := range ports {
		st.RelayPortsInUse[e.key] = e.n
	}

	names := s.listenerNames()
	s.stats.mu.Lock()
	for k, n := range s.stats.requestErrors {
		st.RequestErrors[k] = n
	}
	keys := make(map[listenerKey]bool, len(s.stats.byListener)+len(active))
	// Every bound listener and transport shows, at 0 before its first
	// allocation, so that series exist from the first scrape.
	for _, b := range s.Addrs() {
		for _, tr := range b.Kind.transports() {
			keys[listenerKey{server: addrPortOf(b.Addr), transport: tr}] = true
		}
	}
	for k := range s.stats.byListener {
		keys[k] = true
	}
	for _, e := range active {
		keys[e.key] = true
	}
	for k := range keys {
		var c listenerCounts
		if p := s.stats.byListener[k]; p != nil {
			c = *p
		}
		ls := ListenerStats{Listener: names.name(k), Transport: k.transport.String(),
			Active: active.get(k), Created: c.created, Ended: map[string]uint64{}}
		for _, r := range reasons {
			ls.Ended[r.String()] = c.ended[r]
		}
		st.Listeners = append(st.Listeners, ls)
	}
	s.stats.mu.Unlock()
	slices.SortFunc(st.Listeners, func(a, b ListenerStats) int {
		return cmp.Or(cmp.Compare(a.Listener, b.Listener), cmp.Compare(a.Transport, b.Transport))
	})
	return st
}

// tally counts occurrences of a few distinct comparable keys.
type tally[K comparable] []struct {
	key K
	n   int
}

func (t *tally[K]) add(k K) {
	for i := range *t {
		if (*t)[i].key == k {
			(*t)[i].n++
			return
		}
	}
	*t = append(*t, struct {
		key K
		n   int
	}{k, 1})
}

func (t tally[K]) get(k K) int {
	for _, e := range t {
		if e.key == k {
			return e.n
		}
	}
	return 0
}

// listenerNamer names the listener of a 5-tuple's server address and
// transport after the bound listener it came through.
type listenerNamer []BoundListener

func (s *Server) listenerNames() listenerNamer { return s.Addrs() }

// name returns "KIND://ADDR" of the bound listener that serves k, or the
// bare address when none matches (a listener closed since).
func (n listenerNamer) name(k listenerKey) string {
	for _, b := range n {
		if addrPortOf(b.Addr) != k.server {
			continue
		}
		switch {
		case k.transport == allocations.UDP && b.Kind == UDP,
			k.transport == allocations.TCP && (b.Kind == TCP || b.Kind == TCPTLS),
			k.transport == allocations.TLS && (b.Kind == TLS || b.Kind == TCPTLS):
			return b.Kind.String() + "://" + b.Addr.String()
		}
	}
	return k.server.String()
}

// addrPortOf is a bound listener's address as 5-tuples carry it.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}
