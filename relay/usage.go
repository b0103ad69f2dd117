package relay

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/postern/postern/allocations"
)

// UsageSink receives usage records (Config.Usage): one at the end of every
// allocation and interim ones for long allocations. Record is called on
// the control plane (the request workers, the janitor, an admin request,
// shutdown), never on the packet path; it must return at once (package
// usage puts the record in a bounded queue).
type UsageSink interface {
	Record(UsageRecord)
}

// UsageCounter is what a UsageSink may report for metrics (Stats.Usage).
type UsageCounter interface {
	UsageCounts() UsageCounts
}

// UsageCounts counts what became of the usage records given to a sink.
type UsageCounts struct {
	// Written records reached the file or the stream; Dropped ones were
	// pushed out of a full queue (the oldest go first), WriteErrors counts
	// failed writes (each retried).
	Written, Dropped, WriteErrors uint64
}

// Usage end reasons (UsageRecord.Reason of a final record).
const (
	UsageExpired   = "expired"           // its lifetime ran out (RFC 8656 §7: no Refresh in time)
	UsageRefreshed = "refreshed"         // a Refresh with lifetime 0 (RFC 8656 §7.3)
	UsageKicked    = "kicked"            // an operator ended it (Kick, KickUser)
	UsageConnClose = "connection_closed" // its TCP/TLS connection ended (RFC 8656 §3.1)
	UsageShutdown  = "shutdown"          // the server stopped
	UsageDeleted   = "deleted"           // any other deletion
)

// UsageRecord is what one allocation relayed over one period: from its
// start or its previous record to End. The traffic is the period's, not a
// running total, so that the records of a session add up to what it
// relayed; Seq numbers them from 0 and the last one has Final set.
type UsageRecord struct {
	// Session identifies the allocation on this server process: unique
	// across its restarts (the start time of the process and the
	// allocation's ID).
	Session string
	// Seq is the record's number within the session, from 0.
	Seq uint32
	// Final is set on the record made when the allocation ended; Reason
	// (Usage...) says why. Interim records have neither.
	Final  bool
	Reason string

	ID        uint64 // allocation ID, as in Sessions and the logs
	User      string // quota key: the user, or the REST credential's user part
	Username  string // USERNAME as sent
	Realm     string
	Client    netip.AddrPort
	Transport string // "udp", "tcp" or "tls"
	Relayed   []netip.AddrPort
	// Start is when the allocation was made, PeriodStart when the period
	// of this record began (Start for Seq 0), End when it ended.
	Start, PeriodStart, End time.Time
	// ToPeer and ToClient are the period's relayed packets and payload
	// bytes each way.
	ToPeer, ToClient Traffic
}

// usageTracker makes the records: it remembers, per allocation that has
// had an interim record, what was reported so far, and why an allocation
// is being deleted. nil (no Config.Usage) does nothing.
type usageTracker struct {
	sink     UsageSink
	interval time.Duration
	prefix   string // Session prefix: the process's start time

	mu     sync.Mutex
	state  map[*allocations.Allocation]*usageState // allocations with an interim record
	causes map[*allocations.Allocation]string      // deletions under way, by cause
}

// usageState is what was reported of one allocation so far.
type usageState struct {
	seq              uint32
	at               time.Time
	toPeer, toClient Traffic
}

func newUsageTracker(sink UsageSink, interval time.Duration, epoch time.Time) *usageTracker {
	if sink == nil {
		return nil
	}
	return &usageTracker{
		sink: sink, interval: interval,
		prefix: strconv.FormatInt(epoch.UnixNano(), 36) + "-",
		state:  map[*allocations.Allocation]*usageState{},
		causes: map[*allocations.Allocation]string{},
	}
}

// deleting notes why a is about to be deleted (before Table.Delete or
// Remove): the table's ReasonDeleted covers several causes. A cause left
// for an allocation that someone else removed first is dropped by forget.
func (u *usageTracker) deleting(a *allocations.Allocation, cause string) {
	if u == nil || a == nil {
		return
	}
	u.mu.Lock()
	if _, ok := u.causes[a]; !ok {
		u.causes[a] = cause
	}
	u.mu.Unlock()
}

// forget drops a cause noted for a deletion that did not happen.
func (u *usageTracker) forget(a *allocations.Allocation) {
	if u == nil || a == nil {
		return
	}
	select {
	case <-a.Done():
		return // removed: onRemove consumed (or will consume) the cause
	default:
	}
	u.mu.Lock()
	delete(u.causes, a)
	u.mu.Unlock()
}

// final makes the last record of a, which the table has just removed.
func (u *usageTracker) final(a *allocations.Allocation, why allocations.Reason, realm string, now time.Time) {
	if u == nil {
		return
	}
	reason := UsageDeleted
	u.mu.Lock()
	st := u.state[a]
	delete(u.state, a)
	cause, ok := u.causes[a]
	delete(u.causes, a)
	switch {
	case why == allocations.ReasonExpired:
		reason = UsageExpired
	case why == allocations.ReasonClosed:
		reason = UsageShutdown
	case ok:
		reason = cause
	}
	rec := u.record(a, st, realm, now)
	rec.Final, rec.Reason = true, reason
	u.sink.Record(rec)
	u.mu.Unlock()
}

// record is a's record for the period since st (nil: since its start).
func (u *usageTracker) record(a *allocations.Allocation, st *usageState, realm string, now time.Time) UsageRecord {
	rec := UsageRecord{
		Session: u.prefix + strconv.FormatUint(a.ID, 10),
		ID:      a.ID, User: a.User, Username: a.Username, Realm: realm,
		Client: a.FiveTuple.Client, Transport: a.FiveTuple.Transport.String(),
		Relayed: []netip.AddrPort{a.Relayed},
		Start:   a.Created, PeriodStart: a.Created, End: now,
	}
	if a.Half6 != nil {
		rec.Relayed = append(rec.Relayed, a.Half6.Relayed)
	}
	rec.ToPeer.Packets, rec.ToPeer.Bytes = a.ToPeer.Load()
	rec.ToClient.Packets, rec.ToClient.Bytes = a.ToClient.Load()
	if st != nil {
		rec.Seq, rec.PeriodStart = st.seq, st.at
		rec.ToPeer.Packets -= st.toPeer.Packets
		rec.ToPeer.Bytes -= st.toPeer.Bytes
		rec.ToClient.Packets -= st.toClient.Packets
		rec.ToClient.Bytes -= st.toClient.Bytes
	}
	return rec
}

// interim makes an interim record of every allocation whose last record
// (or start) is at least interval old.
func (u *usageTracker) interim(t *allocations.Table, realm string, now time.Time) {
	t.Range(func(a *allocations.Allocation) bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		st := u.state[a]
		last := a.Created
		if st != nil {
			last = st.at
		}
		if now.Sub(last) < u.interval {
			return true
		}
		select {
		case <-a.Done():
			// Removed already: its final record is made (or being made)
			// by onRemove, which takes u.mu after Done is closed, so no
			// interim record can follow it.
			return true
		default:
		}
		rec := u.record(a, st, realm, now)
		next := &usageState{seq: rec.Seq + 1, at: now}
		if st != nil {
			next.toPeer, next.toClient = st.toPeer, st.toClient
		}
		next.toPeer.Packets += rec.ToPeer.Packets
		next.toPeer.Bytes += rec.ToPeer.Bytes
		next.toClient.Packets += rec.ToClient.Packets
		next.toClient.Bytes += rec.ToClient.Bytes
		u.state[a] = next
		// Under u.mu, so that the final record of a follows its last
		// interim one into the sink.
		u.sink.Record(rec)
		return true
	})
}

// runInterim makes interim records every interval until ctx is done; it
// checks a tenth as often so that no record is much later than due.
func (s *Server) runInterim(ctx context.Context) {
	u := s.usage
	if u == nil || u.interval <= 0 {
		return
	}
	tick := time.NewTicker(max(u.interval/10, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			u.interim(s.table, s.auth().Realm(), now)
		}
	}
}

// endStream deletes the allocation of a TCP/TLS connection that ended
// (RFC 8656 §3.1), noting the cause for its usage record: the
// connection's, or shutdown's, which closes every connection first.
func (s *Server) endStream(ft allocations.FiveTuple) {
	if s.usage == nil {
		s.table.Delete(ft)
		return
	}
	a := s.table.Get(ft)
	cause := UsageConnClose
	if s.life.stopping.Load() {
		cause = UsageShutdown
	}
	s.usage.deleting(a, cause)
	s.table.Delete(ft)
	s.usage.forget(a)
}
