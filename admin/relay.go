package admin

import "github.com/postern/postern/relay"

// Relay is what the admin listener reports on and acts upon: the relay
// server's counters, sessions and lifecycle. *relay.Server implements it;
// tests use a fake, so that the HTTP surface is tested without sockets.
type Relay interface {
	// Stats is one snapshot of the counters (a metrics scrape).
	Stats() relay.Stats
	// Ready and State are the lifecycle, for /readyz.
	Ready() bool
	State() string
	// Sessions lists the live allocations, of one user when user is not "".
	Sessions(user string) []relay.Session
	// Kick ends one allocation by ID; KickUser every allocation of a user.
	Kick(id uint64) bool
	KickUser(user string) int
	// Draining and SetDraining are the drain flag (new allocations refused).
	Draining() bool
	SetDraining(draining bool)
	// Allocations is how many allocations are live.
	Allocations() int
	// RecentAuthFailures are the last failed authentications, newest
	// first (a bounded ring, for the dashboard).
	RecentAuthFailures() []relay.AuthFailureRecord
	// Certificates are the TLS certificates served, soonest expiry first;
	// none without TLS listeners.
	Certificates() []relay.CertificateInfo
}

var _ Relay = (*relay.Server)(nil)
