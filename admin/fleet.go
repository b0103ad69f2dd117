package admin

import (
	"time"

	"github.com/postern/postern/relay"
)

// Fleet is what the admin listener reports of a node's fleet (package
// cluster's Node implements it).
type Fleet interface {
	// Name and Region are the node's.
	Name() string
	Region() string
	// Degraded reports whether the fleet's Redis failed the last call.
	Degraded() bool
	// Fallbacks counts the calls that fell back to local behaviour.
	Fallbacks() uint64
	// LiveNodes is how many nodes the registry lists.
	LiveNodes() int
}

// SessionOf is s as the sessions API reports it at now, for other
// transports of the same JSON (package cluster's fleet operations).
func SessionOf(s relay.Session, now time.Time) Session { return newSession(s, now) }
