package allocations

import (
	"fmt"
	"net/netip"
)

// Holds are resources that are not allocations but cost what one costs, a
// relay socket: the port an EVEN-PORT request reserves for a
// RESERVATION-TOKEN (RFC 8656 §7.2). Each hold counts against its owner's
// UserQuota and IPQuota and against TotalQuota as an allocation does, from
// Hold until Unhold, so a user cannot hold sockets beyond its quotas by
// reserving ports and deleting the allocations that made them.

// Hold counts one held resource of user at ip against the quotas, or
// fails as Create would: ErrQuota for the user's or the address's quota,
// ErrCapacity for the total, ErrClosed once the table is closed. Every
// successful Hold must be matched by one Unhold with the same arguments.
func (t *Table) Hold(user string, ip netip.Addr) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	ip = ip.Unmap()
	switch {
	case t.closed:
		return fmt.Errorf("allocations: hold for %q: %w", user, ErrClosed)
	case t.cfg.UserQuota > 0 && t.users[user]+t.holds.users[user] >= t.cfg.UserQuota:
		return fmt.Errorf("allocations: hold for %q: the user holds %d allocations and %d reservations of %d: %w",
			user, t.users[user], t.holds.users[user], t.cfg.UserQuota, ErrQuota)
	case t.cfg.IPQuota > 0 && t.ips[ip]+t.holds.ips[ip] >= t.cfg.IPQuota:
		return fmt.Errorf("allocations: hold for %v: the address holds %d allocations and %d reservations of %d: %w",
			ip, t.ips[ip], t.holds.ips[ip], t.cfg.IPQuota, ErrQuota)
	case t.cfg.TotalQuota > 0 && int(t.count.Load())+t.holds.total >= t.cfg.TotalQuota:
		return fmt.Errorf("allocations: hold: the server holds %d allocations and %d reservations of %d: %w",
			t.count.Load(), t.holds.total, t.cfg.TotalQuota, ErrCapacity)
	}
	if t.holds.users == nil {
		t.holds.users = make(map[string]int)
		t.holds.ips = make(map[netip.Addr]int)
	}
	t.holds.users[user]++
	t.holds.ips[ip]++
	t.holds.total++
	return nil
}

// Unhold releases one hold made by Hold(user, ip).
func (t *Table) Unhold(user string, ip netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ip = ip.Unmap()
	if t.holds.users[user] <= 0 {
		return // not held: nothing to release
	}
	if t.holds.users[user]--; t.holds.users[user] == 0 {
		delete(t.holds.users, user)
	}
	if t.holds.ips[ip]--; t.holds.ips[ip] <= 0 {
		delete(t.holds.ips, ip)
	}
	t.holds.total--
}

// Holds returns how many holds are counted (for tests and metrics).
func (t *Table) Holds() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.holds.total
}

// holdCounts are the holds per user and address, and in all. Guarded by
// Table.mu.
type holdCounts struct {
	users map[string]int
	ips   map[netip.Addr]int
	total int
}
