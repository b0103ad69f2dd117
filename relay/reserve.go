package relay

import (
	"crypto/rand"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
)

const (
	// reservationLifetime is how long the port after an EVEN-PORT
	// allocation stays reserved for a RESERVATION-TOKEN (RFC 8656 §7.2:
	// "the server ... reserves it for about 30 seconds").
	reservationLifetime = 30 * time.Second
	// maxReservations bounds the sockets held for tokens; past it, a
	// request with the R bit gets 508 (RFC 8656 §7.2).
	maxReservations = 1024
)

// reservations hold the odd ports that EVEN-PORT requests with the R bit
// set aside (RFC 8656 §7.2, §14.6) until an Allocate presents the token.
// Control plane only: a mutex and a small map, swept as they are used.
type reservations struct {
	ports *allocations.PortPool

	mu sync.Mutex
	// mu guards the following.
	byToken map[[8]byte]reservation
}

type reservation struct {
	conn    *net.UDPConn
	expires time.Time
}

func newReservations(ports *allocations.PortPool) *reservations {
	return &reservations{ports: ports, byToken: make(map[[8]byte]reservation)}
}

// listenEvenPair binds an even port P and P+1 on ip; P+1 is reserved under
// the returned token.
func (r *reservations) listenEvenPair(ip netip.Addr) (*net.UDPConn, [8]byte, error) {
	var token [8]byte
	r.mu.Lock()
	r.sweepLocked(time.Now())
	full := len(r.byToken) >= maxReservations
	r.mu.Unlock()
	if full {
		return nil, token, newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: too many port reservations")
	}
	const tries = 32
	for range tries {
		conn, err := r.ports.ListenUDP(ip)
		if err != nil {
			return nil, token, err
		}
		local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
		if local.Port()%2 == 0 {
			next, err := r.ports.ListenUDPPort(ip, local.Port()+1)
			if err == nil {
				_, _ = rand.Read(token[:])
				r.mu.Lock()
				r.byToken[token] = reservation{conn: next, expires: time.Now().Add(reservationLifetime)}
				r.mu.Unlock()
				return conn, token, nil
			}
		}
		r.release(conn)
	}
	return nil, token, newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: no free even/odd relay port pair")
}

// take returns the socket reserved under token, or nil when there is none
// (never issued, already used, or expired).
func (r *reservations) take(token []byte) *net.UDPConn {
	if len(token) != 8 {
		return nil
	}
	key := [8]byte(token)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweepLocked(time.Now())
	res, ok := r.byToken[key]
	if !ok {
		return nil
	}
	delete(r.byToken, key)
	return res.conn
}

// sweepLocked closes expired reservations. r.mu must be held.
func (r *reservations) sweepLocked(now time.Time) {
	for token, res := range r.byToken {
		if now.After(res.expires) {
			delete(r.byToken, token)
			r.release(res.conn)
		}
	}
}

// closeAll releases every reservation, at shutdown.
func (r *reservations) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for token, res := range r.byToken {
		delete(r.byToken, token)
		r.release(res.conn)
	}
}

func (r *reservations) release(conn *net.UDPConn) { r.ports.Close(conn) }

// listenRelay binds a relay socket on ip from the port pool; with evenPort
// (RFC 8656 §7.2 EVEN-PORT) it keeps trying until the port is even.
func (s *Server) listenRelay(ip netip.Addr, evenPort bool) (*net.UDPConn, error) {
	const evenTries = 32
	for range evenTries {
		conn, err := s.ports.ListenUDP(ip)
		if err != nil {
			return nil, err
		}
		if !evenPort {
			return conn, nil
		}
		local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
		if local.Port()%2 == 0 {
			return conn, nil
		}
		s.ports.Close(conn)
	}
	return nil, newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: no even relay port free")
}
