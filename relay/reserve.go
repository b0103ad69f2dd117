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
// Each reservation is a relay socket, so it counts against its owner's
// quotas (user, client address, total) like an allocation, from the
// request that made it until it is redeemed or expires
// (allocations.Table.Hold). Control plane only: a mutex and a small map;
// each reservation expires on a timer of its own.
type reservations struct {
	ports    *allocations.PortPool
	table    *allocations.Table // counts reservations against the quotas
	lifetime time.Duration      // reservationLifetime; shorter in tests

	mu sync.Mutex
	// mu guards the following.
	byToken map[[8]byte]*reservation
}

type reservation struct {
	conn  *net.UDPConn
	user  string     // the owner, whose quotas it counts against
	ip    netip.Addr // the owner's client address
	timer *time.Timer
}

func newReservations(ports *allocations.PortPool, table *allocations.Table) *reservations {
	return &reservations{ports: ports, table: table, lifetime: reservationLifetime, byToken: make(map[[8]byte]*reservation)}
}

// listenEvenPair binds an even port P and P+1 on ip; P+1 is reserved under
// the returned token for user at client, counted against their quotas.
func (r *reservations) listenEvenPair(ip netip.Addr, user string, client netip.Addr) (*net.UDPConn, [8]byte, error) {
	var token [8]byte
	r.mu.Lock()
	full := len(r.byToken) >= maxReservations
	r.mu.Unlock()
	if full {
		return nil, token, newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: too many port reservations")
	}
	// The reserved socket costs what an allocation does: 486 or 508 past
	// the owner's quotas, as RFC 8656 §7.2 answers for allocations.
	if err := r.table.Hold(user, client); err != nil {
		return nil, token, err
	}
	const tries = 32
	for range tries {
		conn, err := r.ports.ListenUDP(ip)
		if err != nil {
			r.table.Unhold(user, client)
			return nil, token, err
		}
		local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
		if local.Port()%2 == 0 {
			next, err := r.ports.ListenUDPPort(ip, local.Port()+1)
			if err == nil {
				_, _ = rand.Read(token[:])
				res := &reservation{conn: next, user: user, ip: client}
				r.mu.Lock()
				r.byToken[token] = res
				key := token
				res.timer = time.AfterFunc(r.lifetime, func() { r.expire(key, res) })
				r.mu.Unlock()
				return conn, token, nil
			}
		}
		r.release(conn)
	}
	r.table.Unhold(user, client)
	return nil, token, newError(stun.CodeInsufficientCapacity, "Insufficient Capacity: no free even/odd relay port pair")
}

// take returns the socket reserved under token, or nil when there is none
// (never issued, already used, or expired). The reservation no longer
// counts against its owner's quotas: the allocation made with the socket
// counts instead.
func (r *reservations) take(token []byte) *net.UDPConn {
	if len(token) != 8 {
		return nil
	}
	key := [8]byte(token)
	r.mu.Lock()
	res, ok := r.byToken[key]
	if ok {
		delete(r.byToken, key)
		res.timer.Stop()
	}
	r.mu.Unlock()
	if !ok {
		return nil
	}
	r.table.Unhold(res.user, res.ip)
	return res.conn
}

// expire closes the reservation under token if it is still res (RFC 8656
// §7.2: kept "for about 30 seconds").
func (r *reservations) expire(token [8]byte, res *reservation) {
	r.mu.Lock()
	cur, ok := r.byToken[token]
	if ok && cur == res {
		delete(r.byToken, token)
	}
	r.mu.Unlock()
	if ok && cur == res {
		r.release(res.conn)
		r.table.Unhold(res.user, res.ip)
	}
}

// len returns the number of live reservations.
func (r *reservations) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byToken)
}

// closeAll releases every reservation, at shutdown.
func (r *reservations) closeAll() {
	r.mu.Lock()
	all := r.byToken
	r.byToken = make(map[[8]byte]*reservation)
	r.mu.Unlock()
	for _, res := range all {
		res.timer.Stop()
		r.release(res.conn)
		r.table.Unhold(res.user, res.ip)
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
