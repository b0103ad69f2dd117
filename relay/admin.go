package relay

import (
	"cmp"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/postern/postern/allocations"
)

// lifecycle is what readiness is made of. Each flag is set once by its
// owner; readers never lock.
type lifecycle struct {
	started  atomic.Bool // Start bound every listener and returned
	stopping atomic.Bool // shutdown has begun
	draining atomic.Bool // SetDraining(true): finish, take no new work
}

// Ready reports whether the server should receive new clients: Start has
// bound its listeners, the server is not stopping, and it is not draining.
// Health checks (a load balancer, a Kubernetes readiness probe) read it.
func (s *Server) Ready() bool {
	return s.life.started.Load() && !s.life.stopping.Load() && !s.life.draining.Load()
}

// State describes the server's lifecycle in one word for health endpoints:
// "starting" (before Start has bound the listeners), "ready", "draining"
// or "stopping".
func (s *Server) State() string {
	switch {
	case s.life.stopping.Load():
		return "stopping"
	case !s.life.started.Load():
		return "starting"
	case s.life.draining.Load():
		return "draining"
	}
	return "ready"
}

// SetDraining marks the server as draining (or not): Ready then reports
// false, so health checks steer new clients elsewhere, and Allocate
// requests are refused (300 Try Alternate with Config.AlternateServer, else
// 508) while existing allocations run on. Whoever drains decides when to
// stop.
func (s *Server) SetDraining(draining bool) { s.life.draining.Store(draining) }

// Draining reports whether SetDraining(true) is in force.
func (s *Server) Draining() bool { return s.life.draining.Load() }

// Allocations returns how many allocations are live.
func (s *Server) Allocations() int { return s.table.Len() }

// Session describes one live allocation for admin views.
type Session struct {
	ID uint64
	// Username is the USERNAME the client authenticated with (for a TURN
	// REST credential "EXPIRY:USER"); User is the user it counts against
	// (USER). Neither is a secret.
	Username, User string
	FiveTuple      allocations.FiveTuple
	// Listener is the listener it came through, e.g. "udp://[::]:3478".
	Listener string
	// Relayed is the relayed transport address advertised to the client.
	Relayed          netip.AddrPort
	Created, Expires time.Time
	Permissions      []allocations.Permission
	Channels         []allocations.Channel
	ToPeer, ToClient Traffic
}

// Sessions returns the live allocations, oldest first; with user non-empty,
// only those of that user (User or Username equal to it).
func (s *Server) Sessions(user string) []Session {
	names := s.listenerNames()
	now := time.Now()
	var out []Session
	s.table.Range(func(a *allocations.Allocation) bool {
		if user != "" && a.User != user && a.Username != user {
			return true
		}
		ss := Session{
			ID:          a.ID,
			Username:    a.Username,
			User:        a.User,
			FiveTuple:   a.FiveTuple,
			Listener:    names.name(listenerKey{server: a.FiveTuple.Server, transport: a.FiveTuple.Transport}),
			Relayed:     a.Relayed,
			Created:     a.Created,
			Expires:     a.Expires(),
			Permissions: a.Permissions(now),
			Channels:    a.Channels(now),
		}
		ss.ToPeer.Packets, ss.ToPeer.Bytes = a.ToPeer.Load()
		ss.ToClient.Packets, ss.ToClient.Bytes = a.ToClient.Load()
		out = append(out, ss)
		return true
	})
	slices.SortFunc(out, func(a, b Session) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Kick ends the allocation with the given ID at once, as a Refresh with
// lifetime 0 would, and reports whether there was one. Its relay socket is
// closed, and so is a TCP/TLS client's connection: the client learns of the
// end at once (RFC 8656 §3.1 ties a TCP/TLS allocation to its connection);
// a UDP client learns at its next request (437 Allocation Mismatch). The
// credentials stay valid: the client may allocate again.
func (s *Server) Kick(id uint64) bool {
	var victim *allocations.Allocation
	s.table.Range(func(a *allocations.Allocation) bool {
		if a.ID == id {
			victim = a
			return false
		}
		return true
	})
	if victim == nil || !s.table.Remove(victim) {
		return false
	}
	closeSink(victim)
	s.log.Info("allocation kicked", "id", id, "user", victim.Username, "client", victim.FiveTuple.Client.String(),
		"transport", victim.FiveTuple.Transport.String(), "relayed", victim.Relayed.String())
	return true
}

// KickUser ends every allocation of user (User or Username equal to it)
// like Kick, and returns how many it ended.
func (s *Server) KickUser(user string) int {
	n := 0
	for _, ss := range s.Sessions(user) {
		if s.Kick(ss.ID) {
			n++
		}
	}
	return n
}
