package allocations

import (
	"net/netip"
	"time"
)

// Permission is a live permission as reported by Permissions.
type Permission struct {
	Peer    netip.Addr // peer IP address (permissions ignore the port)
	Expires time.Time
}

// Channel is a live channel binding as reported by Channels.
type Channel struct {
	Number  uint16
	Peer    netip.AddrPort
	Expires time.Time
}

// Permissions returns the allocation's permissions that are live at now,
// for admin views. It reads the current snapshot without locking and
// allocates the result: it is not for the packet path.
func (a *Allocation) Permissions(now time.Time) []Permission {
	s := a.state.Load()
	if s == nil {
		return nil
	}
	n := now.UnixNano()
	var out []Permission
	for _, p := range s.perms {
		if p.expires > n {
			out = append(out, Permission{Peer: p.ip, Expires: time.Unix(0, p.expires)})
		}
	}
	return out
}

// Channels returns the allocation's channel bindings that are live at now
// (not expired, not cooling in their quarantine), for admin views. Like
// Permissions it is not for the packet path.
func (a *Allocation) Channels(now time.Time) []Channel {
	s := a.state.Load()
	if s == nil {
		return nil
	}
	n := now.UnixNano()
	var out []Channel
	for _, c := range s.chans {
		if c.expires > n {
			out = append(out, Channel{Number: c.number, Peer: c.peer, Expires: time.Unix(0, c.expires)})
		}
	}
	return out
}

// CountLive returns how many permissions and channel bindings of the
// allocation are live at now, without allocating (for metrics over every
// allocation).
func (a *Allocation) CountLive(now time.Time) (permissions, channels int) {
	s := a.state.Load()
	if s == nil {
		return 0, 0
	}
	n := now.UnixNano()
	for _, p := range s.perms {
		if p.expires > n {
			permissions++
		}
	}
	for _, c := range s.chans {
		if c.expires > n {
			channels++
		}
	}
	return permissions, channels
}
