package relay

import "sync/atomic"

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
