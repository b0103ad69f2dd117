package relay

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/postern/postern/allocations"
)

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
	if victim == nil {
		return false
	}
	s.usage.deleting(victim, UsageKicked)
	if !s.table.Remove(victim) {
		s.usage.forget(victim)
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
