package relay

import (
	"hash/maphash"
	"net/netip"

	"golang.org/x/time/rate"
)

// limiterBuckets is the size of the per-address limiter table. Addresses
// hash into it; two addresses that collide share a bucket. The table is
// fixed, so a flood from any number of addresses cannot grow memory.
const limiterBuckets = 1024

// ipLimiter is a token bucket per client address (approximately: see
// limiterBuckets), for the responses the server sends before a client has
// proven who it is (401, 438, 400, 420). Answering those costs us an HMAC
// and bandwidth toward an address that may be spoofed, so each address gets
// a small budget.
type ipLimiter struct {
	seed    maphash.Seed
	buckets []*rate.Limiter
}

// newIPLimiter returns a limiter allowing perSecond responses a second per
// address with the given burst; nil (no limit) when perSecond <= 0.
func newIPLimiter(perSecond float64, burst int) *ipLimiter {
	if perSecond <= 0 {
		return nil
	}
	l := &ipLimiter{seed: maphash.MakeSeed(), buckets: make([]*rate.Limiter, limiterBuckets)}
	for i := range l.buckets {
		l.buckets[i] = rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))
	}
	return l
}

// allow reports whether ip may get one more response now.
func (l *ipLimiter) allow(ip netip.Addr) bool {
	if l == nil {
		return true
	}
	b := ip.As16()
	h := maphash.Bytes(l.seed, b[:])
	return l.buckets[h%limiterBuckets].Allow()
}
