package relay

import (
	"net/netip"
	"sync"
	"time"
)

// Per-source limits on the answers the server sends over UDP before a
// client has proven who it is. UDP source addresses can be spoofed, so any
// such answer may be a reflection toward a victim: the limits bound what one
// victim address can receive (README "Security and abuse limits", measured
// in abuse_test.go). Over TCP and TLS the handshake proves the address, and
// a client there never retransmits, so a dropped answer would hang it: the
// limits apply to UDP only (coturn's --unauthorized-ratelimit is UDP-only
// too).

// answerKind is the budget an answer spends.
type answerKind uint8

const (
	// answerUnauth: 401, 438, 400 and 420 to a request that did not
	// authenticate (Config.UnauthenticatedRate).
	answerUnauth answerKind = iota
	// answerBinding: Binding success (Config.BindingRate).
	answerBinding
	numAnswerKinds
)

// limiterCapacity is the most sources the limiter remembers. Each costs
// about 140 bytes (its slot and map entry: 4.5 MB for a full table,
// measured by TestLimiterMemoryBounded), so a flood from any number of
// addresses holds no more. When full,
// the least recently seen source is forgotten: it starts again with a full
// burst. A flood therefore never starves anyone (a forgotten client is
// answered), and the per-source bound holds for every source seen among
// the last limiterCapacity distinct ones.
const limiterCapacity = 1 << 15

// sourceKey is the 16-byte form of what one budget is kept for: an IPv4
// address (as ::ffff:a.b.c.d), or an IPv6 /64 (low 64 bits zero). The two
// never collide: an IPv6 key has zeros where the IPv4 form has 0xffff.
// A /64 is one network (RFC 4291 §2.5.4 interface identifiers are 64 bits),
// handed out whole to one customer and trivially spread over by one host:
// per address, one machine would hold 2^64 budgets.
type sourceKey [16]byte

// sourceOf returns the budget key of a client address.
func sourceOf(ip netip.Addr) sourceKey {
	ip = ip.Unmap()
	k := sourceKey(ip.As16())
	if !ip.Is4() {
		clear(k[8:])
	}
	return k
}

// bucketRate is one kind's token bucket setting; perNano 0 means no limit.
type bucketRate struct {
	perNano, burst float64 // tokens per nanosecond; bucket size
}

// sourceSlot is one source's budgets, linked into the LRU list by index.
type sourceSlot struct {
	key        sourceKey
	last       int64 // when tokens were brought up to date (ns since epoch)
	tokens     [numAnswerKinds]float64
	prev, next int32 // toward the most / least recently used; -1 at the ends
}

// sourceLimiter is a token bucket per source and answer kind, in a table
// keyed by source (no hash sharing: one source's flood drains only its own
// budget) and bounded by limiterCapacity with LRU eviction. It holds no
// pointer besides its map and slice, so the garbage collector does not
// scan its entries.
type sourceLimiter struct {
	rates [numAnswerKinds]bucketRate
	cap   int
	epoch time.Time
	now   func() int64 // ns since epoch; replaced in tests

	// mu guards the following.
	mu         sync.Mutex
	index      map[sourceKey]int32
	slots      []sourceSlot
	head, tail int32 // most and least recently used slot, -1 when empty
}

// newSourceLimiter returns a limiter with the given per-second rates and
// bursts for unauthenticated and Binding answers; a rate <= 0 is no limit
// for that kind. It returns nil (no limit at all) when both are unlimited.
func newSourceLimiter(unauthRate float64, unauthBurst int, bindingRate float64, bindingBurst int) *sourceLimiter {
	if unauthRate <= 0 && bindingRate <= 0 {
		return nil
	}
	l := &sourceLimiter{cap: limiterCapacity, epoch: time.Now(), head: -1, tail: -1,
		index: make(map[sourceKey]int32)}
	l.now = func() int64 { return int64(time.Since(l.epoch)) }
	set := func(k answerKind, perSecond float64, burst int) {
		if perSecond > 0 {
			l.rates[k] = bucketRate{perNano: perSecond / 1e9, burst: float64(max(burst, 1))}
		}
	}
	set(answerUnauth, unauthRate, unauthBurst)
	set(answerBinding, bindingRate, bindingBurst)
	return l
}

// allow reports whether ip may get one more answer of kind k now, and
// spends it.
func (l *sourceLimiter) allow(ip netip.Addr, k answerKind) bool {
	if l == nil || l.rates[k].perNano == 0 {
		return true
	}
	key := sourceOf(ip)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slotLocked(key, now)
	for kind, r := range l.rates {
		if r.perNano != 0 {
			s.tokens[kind] = min(r.burst, s.tokens[kind]+float64(now-s.last)*r.perNano)
		}
	}
	s.last = now
	if s.tokens[k] < 1 {
		return false
	}
	s.tokens[k]--
	return true
}

// slotLocked returns key's slot, made most recently used; a new source
// gets a slot with full buckets, the least recently used one's when the
// table is full.
func (l *sourceLimiter) slotLocked(key sourceKey, now int64) *sourceSlot {
	if i, ok := l.index[key]; ok {
		l.unlinkLocked(i)
		l.pushFrontLocked(i)
		return &l.slots[i]
	}
	var i int32
	if len(l.slots) < l.cap {
		i = int32(len(l.slots))
		l.slots = append(l.slots, sourceSlot{})
	} else {
		i = l.tail
		delete(l.index, l.slots[i].key)
		l.unlinkLocked(i)
	}
	s := &l.slots[i]
	*s = sourceSlot{key: key, last: now}
	for kind, r := range l.rates {
		s.tokens[kind] = r.burst
	}
	l.index[key] = i
	l.pushFrontLocked(i)
	return s
}

func (l *sourceLimiter) unlinkLocked(i int32) {
	s := &l.slots[i]
	if s.prev >= 0 {
		l.slots[s.prev].next = s.next
	} else {
		l.head = s.next
	}
	if s.next >= 0 {
		l.slots[s.next].prev = s.prev
	} else {
		l.tail = s.prev
	}
}

func (l *sourceLimiter) pushFrontLocked(i int32) {
	s := &l.slots[i]
	s.prev, s.next = -1, l.head
	if l.head >= 0 {
		l.slots[l.head].prev = i
	}
	l.head = i
	if l.tail < 0 {
		l.tail = i
	}
}

// sources returns how many sources the limiter remembers (for tests).
func (l *sourceLimiter) sources() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.index)
}
