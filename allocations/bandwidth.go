package allocations

import (
	"sync/atomic"
	"time"
)

// ByteRate is a lock-free byte-rate limiter: the generic cell rate
// algorithm (GCRA), the token bucket written as one "theoretical arrival
// time" advanced with compare-and-swap. Allow is HOT: no lock, no
// allocation, safe from any number of goroutines.
type ByteRate struct {
	// params is replaced whole by SetRate (a fleet's shared user cap
	// changes it once a heartbeat); Allow loads it once per packet.
	params atomic.Pointer[rateParams]
	tat    atomic.Int64
	// refused is set when Allow refuses (read and cleared by Refused):
	// the demand exceeded the rate, which a fleet sharing a user's cap
	// needs to know (a measured rate jitters by a packet).
	refused atomic.Bool
}

// rateParams are a ByteRate's rate and burst; never changed once stored.
type rateParams struct {
	nsPerByte float64 // time one byte of budget takes to refill
	tolerance int64   // how far ahead of now tat may run: the burst, in ns
}

// paramsOf returns the parameters of bytesPerSecond (> 0) with a burst of
// burstBytes, raised to one second's worth and to one largest packet.
func paramsOf(bytesPerSecond, burstBytes int64) *rateParams {
	burstBytes = max(burstBytes, bytesPerSecond, 65535)
	ns := float64(time.Second) / float64(bytesPerSecond)
	return &rateParams{nsPerByte: ns, tolerance: int64(ns * float64(burstBytes))}
}

// NewByteRate returns a limiter of bytesPerSecond with a burst of
// burstBytes; nil (no limit) when bytesPerSecond <= 0. A burst below one
// second's worth is raised to it, so that one large packet always fits.
func NewByteRate(bytesPerSecond, burstBytes int64) *ByteRate {
	if bytesPerSecond <= 0 {
		return nil
	}
	r := &ByteRate{}
	r.params.Store(paramsOf(bytesPerSecond, burstBytes))
	return r
}

// SetRate changes the limiter's rate and burst (as NewByteRate; a rate
// <= 0 is ignored: a limiter cannot be removed). Control plane: it
// allocates, and Allow sees the new rate from its next call on. The
// budget already spent carries over as time, so a lower rate does not
// hand out a new burst.
func (r *ByteRate) SetRate(bytesPerSecond, burstBytes int64) {
	if r == nil || bytesPerSecond <= 0 {
		return
	}
	r.params.Store(paramsOf(bytesPerSecond, burstBytes))
}

// Refused reports whether Allow refused a packet since the last call, and
// clears the mark; false for nil.
func (r *ByteRate) Refused() bool {
	return r != nil && r.refused.Swap(false)
}

// Rate returns the limiter's rate in bytes per second; 0 for nil.
func (r *ByteRate) Rate() int64 {
	if r == nil {
		return 0
	}
	return int64(float64(time.Second)/r.params.Load().nsPerByte + 0.5)
}

// Allow reports whether n more bytes fit the budget at now (a monotonic
// nanosecond clock, e.g. time.Since of a fixed start), and spends them if
// so. A nil limiter allows everything.
func (r *ByteRate) Allow(n int, now int64) bool {
	if r == nil {
		return true
	}
	p := r.params.Load()
	cost := int64(p.nsPerByte * float64(n))
	for {
		tat := r.tat.Load()
		if tat-now > p.tolerance {
			// Debt run up under a larger tolerance, before SetRate
			// raised the rate (a burst is one second's worth but at
			// least 65 535 bytes, so a lower rate may tolerate more
			// time): what exceeds the new burst is forgiven, or the
			// limiter would pass nothing at the higher rate until
			// the old debt ran out.
			r.tat.CompareAndSwap(tat, now+p.tolerance)
			continue
		}
		next := max(tat, now) + cost
		if next-now > p.tolerance {
			if !r.refused.Load() { // a store only on the first refusal of an interval
				r.refused.Store(true)
			}
			return false
		}
		if r.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}

// Limits are the byte-rate limiters an allocation's traffic passes, one
// per direction; a nil field means no limit that way.
type Limits struct {
	ToPeer, ToClient *ByteRate
}

// direction is one way of relayed traffic.
type direction bool

const (
	toPeer   direction = false
	toClient direction = true
)

// of returns the limiter of direction d.
func (l *Limits) of(d direction) *ByteRate {
	if d == toClient {
		return l.ToClient
	}
	return l.ToPeer
}

// newLimits returns limiters of bytesPerSecond both ways, with a burst of
// one second's worth.
func newLimits(bytesPerSecond int64) Limits {
	return Limits{
		ToPeer:   NewByteRate(bytesPerSecond, bytesPerSecond),
		ToClient: NewByteRate(bytesPerSecond, bytesPerSecond),
	}
}
