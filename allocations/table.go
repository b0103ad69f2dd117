package allocations

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the Table. They are wrapped with context; test with errors.Is.
var (
	// ErrExists: the 5-tuple (or relayed address) already has an allocation
	// (RFC 8656 §7.2: 437 Allocation Mismatch).
	ErrExists = errors.New("allocation already exists")
	// ErrQuota: the user already holds Config.UserQuota allocations
	// (RFC 8656 §7.2: 486 Allocation Quota Reached).
	ErrQuota = errors.New("allocation quota reached")
	// ErrClosed: the table has been closed.
	ErrClosed = errors.New("allocation table closed")
)

// Transport is the transport protocol between client and server, the third
// part of the 5-tuple.
type Transport uint8

// Transports. The zero value is invalid so that a forgotten field is caught by Create.
const (
	UDP Transport = iota + 1
	TCP
	TLS
)

// String returns "udp", "tcp" or "tls".
func (t Transport) String() string {
	switch t {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	case TLS:
		return "tls"
	}
	return "Transport(" + strconv.Itoa(int(t)) + ")"
}

// FiveTuple identifies an allocation (RFC 8656 §2.2). It is comparable and is
// used as a map key, so addresses are compared exactly: callers must use the
// same form (as returned by the socket) for Create and Get.
type FiveTuple struct {
	Client    netip.AddrPort // the client's address as seen by the server
	Server    netip.AddrPort // the listener's local address
	Transport Transport
}

// String formats the 5-tuple for logs.
func (ft FiveTuple) String() string {
	return ft.Transport.String() + " " + ft.Client.String() + "->" + ft.Server.String()
}

// Reason tells OnRemove why an allocation was removed.
type Reason uint8

// Reasons for removal.
const (
	ReasonExpired Reason = iota + 1 // lifetime ran out (found by Sweep)
	ReasonDeleted                   // Delete (Refresh with lifetime 0, connection closed, ...)
	ReasonClosed                    // Table.Close
)

// String returns "expired", "deleted" or "closed".
func (r Reason) String() string {
	switch r {
	case ReasonExpired:
		return "expired"
	case ReasonDeleted:
		return "deleted"
	case ReasonClosed:
		return "closed"
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Config configures a Table.
type Config struct {
	// UserQuota is the most allocations one user (Allocation.User) may hold
	// at once, across every transport and listener. 0 means unlimited.
	UserQuota int
	// IPQuota is the most allocations clients at one IP address may hold
	// at once (ErrQuota), across every transport and listener. 0 means
	// unlimited.
	IPQuota int
	// TotalQuota is the most allocations the table holds (ErrCapacity,
	// answered 508). 0 means unlimited.
	TotalQuota int
	// AllocationBandwidth and UserBandwidth limit relayed bytes per second
	// in each direction, for one allocation and for all of one user's
	// allocations together; 0 means unlimited. Excess packets are dropped
	// by the relay (Allocation.AllowToPeer, AllowToClient).
	AllocationBandwidth, UserBandwidth int64
	// Now is the clock used for expiry; time.Now if nil.
	Now func() time.Time
	// OnRemove, if set, is called once for every removed allocation, after
	// its Conn is closed and Done is closed, outside the table's locks.
	OnRemove func(*Allocation, Reason)
	// BeforeClose, if set, is called for every removed allocation before
	// its sockets close and its ports are given back (the kernel path's
	// entries, keyed by relayed address, must go before the port can be
	// another allocation's), outside the table's locks.
	BeforeClose func(*Allocation)
	// Ports, if set, gets back the local port of every removed allocation's
	// Conn (PortPool.Release) after the Conn is closed.
	Ports *PortPool
}

// numShards is the number of 5-tuple index shards; a power of two.
const numShards = 64

// Table is the allocation table shared by every listener. Get is lock-free
// and allocation-free; every other method is control plane. The zero value
// is not usable: create with NewTable.
type Table struct {
	cfg    Config
	shards [numShards]atomic.Pointer[map[FiveTuple]*Allocation] // written only under mu
	count  atomic.Int64                                         // allocations in the table

	mu sync.Mutex
	// mu guards the following, and serialises every writer of shards.
	built   [numShards]int // per shard: most entries since the map was last built by re-inserting
	relayed map[netip.AddrPort]*Allocation
	users   map[string]int
	ips     map[netip.Addr]int
	bw      map[string]*Limits // per-user bandwidth limiters, while the user holds allocations
	holds   holdCounts         // reservations counted against the quotas (hold.go)
	closed  bool
	lastID  uint64
}

// NewTable returns an empty table.
func NewTable(cfg Config) *Table {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Table{
		cfg:     cfg,
		relayed: make(map[netip.AddrPort]*Allocation),
		users:   make(map[string]int),
		ips:     make(map[netip.Addr]int),
		bw:      make(map[string]*Limits),
	}
	for i := range t.shards {
		m := make(map[FiveTuple]*Allocation)
		t.shards[i].Store(&m)
	}
	return t
}

// shardOf picks the shard of a 5-tuple: a splitmix64 finaliser over the
// client address and port. Cheap, allocation-free, and spreads both many
// ports on one address and one port on many addresses. IPv4 (and
// IPv4-mapped) addresses take the As4 path: As16 costs ~4x more (its 16-byte
// result defeats store forwarding), and byte-at-a-time FNV ~8x more.
func shardOf(ft *FiveTuple) int {
	var x uint64
	if a := ft.Client.Addr(); a.Is4() || a.Is4In6() {
		b := a.As4()
		x = uint64(binary.LittleEndian.Uint32(b[:]))
	} else {
		b := a.As16()
		x = binary.LittleEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(b[8:])
	}
	x ^= uint64(ft.Client.Port()) << 32
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return int(x & (numShards - 1))
}

// Create inserts a with the given lifetime. In one atomic step it checks
// that a.FiveTuple and a.Relayed are free (ErrExists) and that a.User holds
// fewer than UserQuota allocations across all transports and listeners
// (ErrQuota), then adds a to both indexes and to the user's count. The caller
// has already bound a.Conn (and a.Half6.Conn); on error the caller still
// owns them. A dual allocation (Half6 set) is indexed under both relayed
// addresses and counts as one against every quota. An Allocation can be
// created once.
func (t *Table) Create(a *Allocation, lifetime time.Duration) error {
	ft := a.FiveTuple
	switch {
	case !ft.Client.IsValid():
		return fmt.Errorf("allocations: create %v: invalid client address", ft)
	case ft.Transport < UDP || ft.Transport > TLS:
		return fmt.Errorf("allocations: create %v: invalid transport", ft)
	case lifetime <= 0:
		return fmt.Errorf("allocations: create %v: lifetime %v is not positive", ft, lifetime)
	}
	now := t.cfg.Now()

	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return fmt.Errorf("allocations: create %v: %w", ft, ErrClosed)
	case a.table != nil:
		return fmt.Errorf("allocations: create %v: allocation was already created: %w", ft, ErrExists)
	case t.Get(ft) != nil:
		return fmt.Errorf("allocations: create %v: %w", ft, ErrExists)
	case a.Relayed.IsValid() && t.relayed[a.Relayed] != nil:
		return fmt.Errorf("allocations: create %v: relayed address %v in use: %w", ft, a.Relayed, ErrExists)
	case a.Half6 != nil && (!a.Half6.Relayed.IsValid() || a.Half6.Conn == nil):
		return fmt.Errorf("allocations: create %v: IPv6 half without relayed address or socket", ft)
	case a.Half6 != nil && t.relayed[a.Half6.Relayed] != nil:
		return fmt.Errorf("allocations: create %v: relayed address %v in use: %w", ft, a.Half6.Relayed, ErrExists)
	case t.cfg.UserQuota > 0 && t.users[a.User]+t.holds.users[a.User] >= t.cfg.UserQuota:
		return fmt.Errorf("allocations: create %v: user %q holds %d of %d: %w", ft, a.User, t.users[a.User], t.cfg.UserQuota, ErrQuota)
	case t.cfg.IPQuota > 0 && t.ips[ft.Client.Addr()]+t.holds.ips[ft.Client.Addr().Unmap()] >= t.cfg.IPQuota:
		return fmt.Errorf("allocations: create %v: address %v holds %d of %d: %w", ft, ft.Client.Addr(), t.ips[ft.Client.Addr()], t.cfg.IPQuota, ErrQuota)
	case t.cfg.TotalQuota > 0 && int(t.count.Load())+t.holds.total >= t.cfg.TotalQuota:
		return fmt.Errorf("allocations: create %v: the server holds %d of %d allocations: %w", ft, t.count.Load(), t.cfg.TotalQuota, ErrCapacity)
	}

	// Everything a reader may look at is set before the allocation is
	// published by the shard pointer swap below.
	a.table = t
	t.lastID++
	a.ID = t.lastID
	if a.Created.IsZero() {
		a.Created = now
	}
	a.expires.Store(now.Add(lifetime).UnixNano())
	if d := a.Half6; d != nil {
		for i := range d.halves {
			d.halves[i].Store(a.expires.Load())
		}
	}

	i := shardOf(&ft)
	m := t.copyShardLocked(i, len(*t.shards[i].Load())+1)
	m[ft] = a
	t.shards[i].Store(&m)

	if a.Relayed.IsValid() {
		t.relayed[a.Relayed] = a
	}
	if a.Half6 != nil {
		t.relayed[a.Half6.Relayed] = a
	}
	if t.cfg.AllocationBandwidth > 0 || t.cfg.UserBandwidth > 0 {
		a.limits = &allocLimits{own: newLimits(t.cfg.AllocationBandwidth)}
		if t.cfg.UserBandwidth > 0 {
			if t.bw[a.User] == nil {
				t.bw[a.User] = &Limits{}
				*t.bw[a.User] = newLimits(t.cfg.UserBandwidth)
			}
			a.limits.user = t.bw[a.User]
		}
	}
	t.users[a.User]++
	t.ips[ft.Client.Addr()]++
	t.count.Add(1)
	return nil
}

// Get returns the allocation of ft, or nil. HOT: lock-free, no allocation.
func (t *Table) Get(ft FiveTuple) *Allocation {
	return (*t.shards[shardOf(&ft)].Load())[ft]
}

// ByRelayed returns the allocation whose relayed address is addr, or nil.
func (t *Table) ByRelayed(addr netip.AddrPort) *Allocation {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.relayed[addr]
}

// Delete removes the allocation of ft at once (ReasonDeleted) and reports
// whether there was one.
func (t *Table) Delete(ft FiveTuple) bool {
	a := t.Get(ft)
	return a != nil && t.Remove(a)
}

// Len returns the number of allocations.
func (t *Table) Len() int { return int(t.count.Load()) }

// IPCount returns how many allocations clients at ip hold.
func (t *Table) IPCount(ip netip.Addr) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ips[ip]
}

// UserCount returns the number of allocations user holds.
func (t *Table) UserCount(user string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.users[user]
}

// Range calls f for each allocation until f returns false. It walks a
// snapshot of each shard without locking: allocations created or removed
// meanwhile may or may not be seen. f may call any Table method.
func (t *Table) Range(f func(*Allocation) bool) {
	for i := range t.shards {
		for _, a := range *t.shards[i].Load() {
			if !f(a) {
				return
			}
		}
	}
}

// Sweep removes the allocations whose expiry is at or before now
// (ReasonExpired) and prunes the expired permissions and channel bindings of
// the others (channels once past their quarantine).
func (t *Table) Sweep(now time.Time) {
	n := now.UnixNano()
	var expired []*Allocation
	for i := range t.shards {
		for _, a := range *t.shards[i].Load() {
			if a.expires.Load() <= n {
				expired = append(expired, a)
			} else {
				if a.Half6 != nil {
					t.expireHalves(a, n)
				}
				a.prune(n)
			}
		}
	}
	if len(expired) == 0 {
		return
	}
	t.mu.Lock()
	// Re-check under the lock: a Refresh may have raced with the scan.
	live := expired[:0]
	for _, a := range expired {
		if a.expires.Load() <= n {
			live = append(live, a)
		}
	}
	removed := t.removeLocked(live)
	t.mu.Unlock()
	t.finish(removed, ReasonExpired)
}

// Run sweeps once a second until ctx is done.
func (t *Table) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Sweep(t.cfg.Now())
		}
	}
}

// Close removes every allocation (ReasonClosed); later Creates fail with
// ErrClosed.
func (t *Table) Close() {
	t.mu.Lock()
	t.closed = true
	var all []*Allocation
	for i := range t.shards {
		for _, a := range *t.shards[i].Load() {
			all = append(all, a)
		}
	}
	removed := t.removeLocked(all)
	t.mu.Unlock()
	t.finish(removed, ReasonClosed)
}

// removeLocked takes the given allocations out of both indexes and the user
// counts, copying each affected shard once, and returns those it removed
// (an allocation already removed by someone else is skipped, so each is
// removed exactly once). t.mu must be held.
func (t *Table) removeLocked(as []*Allocation) []*Allocation {
	var byShard [numShards][]*Allocation
	for _, a := range as {
		i := shardOf(&a.FiveTuple)
		if (*t.shards[i].Load())[a.FiveTuple] == a {
			byShard[i] = append(byShard[i], a)
		}
	}
	removed := make([]*Allocation, 0, len(as))
	for i, rm := range byShard {
		if len(rm) == 0 {
			continue
		}
		m := t.copyShardLocked(i, len(*t.shards[i].Load())-len(rm))
		for _, a := range rm {
			if m[a.FiveTuple] != a {
				continue // listed twice
			}
			delete(m, a.FiveTuple)
			removed = append(removed, a)
			if t.relayed[a.Relayed] == a {
				delete(t.relayed, a.Relayed)
			}
			if a.Half6 != nil && t.relayed[a.Half6.Relayed] == a {
				delete(t.relayed, a.Half6.Relayed)
			}
			if t.users[a.User]--; t.users[a.User] <= 0 {
				delete(t.users, a.User)
				delete(t.bw, a.User)
			}
			if ip := a.FiveTuple.Client.Addr(); t.ips[ip] > 1 {
				t.ips[ip]--
			} else {
				delete(t.ips, ip)
			}
			t.count.Add(-1)
		}
		t.shards[i].Store(&m)
	}
	return removed
}

// copyShardLocked returns a private copy of shard i, to be changed and
// stored, that will hold about want entries. maps.Clone copies the hash
// tables wholesale, without rehashing, several times faster than
// re-inserting; but Go maps never shrink, so once a shard has fallen below a
// quarter of its peak it is rebuilt at its new size instead. t.mu must be held.
func (t *Table) copyShardLocked(i, want int) map[FiveTuple]*Allocation {
	old := *t.shards[i].Load()
	if want >= t.built[i]/4 {
		t.built[i] = max(t.built[i], want)
		return maps.Clone(old)
	}
	m := make(map[FiveTuple]*Allocation, want)
	for k, v := range old {
		m[k] = v
	}
	t.built[i] = want
	return m
}

// finish completes removals outside the table's locks: close the relay
// socket (which ends its read loop) or the TCP relay, return its port,
// close Done, notify.
func (t *Table) finish(removed []*Allocation, why Reason) {
	for _, a := range removed {
		if t.cfg.BeforeClose != nil {
			t.cfg.BeforeClose(a)
		}
		if a.Half6 == nil {
			t.closeConn(a.Conn)
		} else {
			for _, i := range a.liveHalves() { // a dropped half is closed already
				conn, _ := a.halfConn(i)
				t.closeConn(conn)
			}
		}
		if a.TCP != nil {
			local := a.TCP.Addr()
			_ = a.TCP.Close()
			if t.cfg.Ports != nil {
				t.cfg.Ports.releaseAddr(local)
			}
		}
		a.markRemoved()
		if t.cfg.OnRemove != nil {
			t.cfg.OnRemove(a, why)
		}
	}
}

// closeConn closes a relay socket (which ends its read loop) and returns
// its port to Config.Ports.
func (t *Table) closeConn(conn *net.UDPConn) {
	if conn == nil {
		return
	}
	local := conn.LocalAddr()
	_ = conn.Close() // nothing useful to do with a close error here
	if t.cfg.Ports != nil {
		t.cfg.Ports.releaseAddr(local)
	}
}

// DeleteFamily deletes the half of a dual allocation that relays to ip's
// family (RFC 8656 §8.1: a Refresh with REQUESTED-ADDRESS-FAMILY and
// LIFETIME 0 "can also be used to delete an allocation of a specific
// address type"): its socket is closed, its port released, its relayed
// address freed, and the permissions and channels of that family dropped;
// the other half, and the allocation, live on. Deleting the only live half
// (or the family of an allocation of one family) removes the allocation
// (ReasonDeleted). It reports whether a had a live half of that family.
func (t *Table) DeleteFamily(a *Allocation, ip netip.Addr) bool {
	if !a.HasFamily(ip) {
		return false
	}
	i := halfOf(ip)
	if !a.Dual() || !a.dropHalf(i, 0) {
		// Of one family, or the last live half: the whole allocation goes.
		return t.Remove(a)
	}
	t.finishHalf(a, i)
	return true
}

// finishHalf completes dropping half i of a: unindex its relayed address,
// close its socket.
func (t *Table) finishHalf(a *Allocation, i int) {
	conn, addr := a.halfConn(i)
	t.mu.Lock()
	if t.relayed[addr] == a {
		delete(t.relayed, addr)
	}
	t.mu.Unlock()
	t.closeConn(conn)
}

// expireHalves drops the halves of a dual allocation that expired at n
// while the other half lives on (the allocation itself expires with its
// last half).
func (t *Table) expireHalves(a *Allocation, n int64) {
	for i := range a.Half6.halves {
		if exp := a.Half6.halves[i].Load(); exp != 0 && exp <= n && a.dropHalf(i, n) {
			t.finishHalf(a, i)
		}
	}
}

// Remove removes a at once (ReasonDeleted) and reports whether it was still
// in the table. Admin tools use it to end an allocation they picked from
// Range; Delete finds the allocation by its 5-tuple first.
func (t *Table) Remove(a *Allocation) bool {
	t.mu.Lock()
	removed := t.removeLocked([]*Allocation{a})
	t.mu.Unlock()
	t.finish(removed, ReasonDeleted)
	return len(removed) > 0
}
