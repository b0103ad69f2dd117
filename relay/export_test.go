package relay

import "time"

// SetTCPBindTimeout shortens how long a peer data connection waits for its
// ConnectionBind (RFC 6062's 30 s) in a Config, so that tests need not wait
// that long.
func SetTCPBindTimeout(c *Config, d time.Duration) { c.tcpBindTimeout = d }

// ClientConns is the number of accepted client connections counted
// against MaxConns.
func (s *Server) ClientConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients
}

// KernelBindings is how many bindings the kernel path holds, or -1 when
// there is none.
func (s *Server) KernelBindings() int {
	k := s.kernel.Load()
	if k == nil {
		return -1
	}
	return k.path.Len()
}

// KernelRelayed is what the kernel path's tables count for the bindings
// they hold: packets to peers and to clients.
func (s *Server) KernelRelayed() (toPeer, toClient uint64) {
	k := s.kernel.Load()
	if k == nil {
		return 0, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, bs := range k.byAlloc {
		for _, b := range bs {
			p, c, err := k.path.Counts(b.b)
			if err == nil {
				toPeer, toClient = toPeer+p.Packets, toClient+c.Packets
			}
		}
	}
	return toPeer, toClient
}
