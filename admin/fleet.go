package admin

import (
	"time"

	"github.com/postern/postern/relay"
)

// SessionOf is s as the sessions API reports it at now, for other
// transports of the same JSON (package cluster's fleet operations).
func SessionOf(s relay.Session, now time.Time) Session { return newSession(s, now) }
