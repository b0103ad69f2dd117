package cluster

import (
	"github.com/postern/postern/allocations"
)

// The per-user bandwidth cap ([limits] user_bandwidth) shared across the
// fleet, approximately. Each heartbeat, a node publishes in its registry
// entry (Info.Users) the bytes per second each capped user relayed
// through it, each way, over its last heartbeat interval (its limit
// instead when its limiter refused packets in the interval: the demand
// is then at least the limit, while a measured rate jitters by a packet
// or so per heartbeat, which the others would take for room); after reading
// the registry, it sets that user's local limiters to the cap less what
// the other live nodes report, never below a floor share of cap/k (k: the
// nodes relaying for the user, this one included), so that a node whose
// report is stale or silent cannot starve the user here. With Redis
// unreachable, each node falls back to the full cap of its own. The data
// path stays lock-free and allocation-free: it reads the limiter's rate
// through one atomic pointer, which SetRate replaces once a heartbeat,
// and marks a refusal with one atomic flag.
//
// Error bound. Each node's limit lies in [cap/k, cap] and is set once a
// heartbeat H from the others' reports. A change of demand (a user moving
// between nodes, or starting on a node, which begins at the full cap) is
// fully in a node's report within 2·H (the interval it fell in is
// reported in part), which the other nodes act on within one more H: so
// for at most 3·H after a change the fleet may relay up to k × cap, that
// is at most 3·H·(k−1)·cap bytes over the cap per change. With demand
// steady, the fleet relays the cap, each node at least cap/k of it when
// it has the demand: exactly while every node is limited (they report
// their limits), else within the jitter of the measured rates, about one
// packet per heartbeat per node below its limit. On top, as on one node,
// each node's limiter lets a burst of one second of its rate (at least
// 65 535 bytes) through after the user was idle there (k·cap at most).
// Reports are clamped to the cap, so that one node's burst does not push
// the others to their floor for longer than one interval. With Redis
// down, the fleet relays at most k × cap (each node's own cap).

// UserRate is what one node relayed for one capped user over its last
// heartbeat interval, in bytes per second each way.
type UserRate struct {
	ToPeer   int64 `json:"to_peer"`
	ToClient int64 `json:"to_client"`
}

// userRates returns the rates of the capped users relaying through tab
// over the last dt seconds (nil when dt is 0: the first sample), from
// the allocations' counters; the counters of allocations that ended in
// the interval are lost (the rate is then under-reported, for one
// interval, by what they relayed in it). Heartbeat goroutine only (n.mu).
func (n *Node) userRates(tab *allocations.Table, dt float64) map[string]UserRate {
	prev := n.bwPrev
	cur := make(map[*allocations.Allocation][2]uint64, len(prev))
	bytes := map[string][2]uint64{}
	tab.Range(func(a *allocations.Allocation) bool {
		_, p := a.ToPeer.Load()
		_, c := a.ToClient.Load()
		cur[a] = [2]uint64{p, c}
		old := prev[a] // zero for an allocation created in the interval
		b := bytes[a.User]
		b[0] += p - min(old[0], p)
		b[1] += c - min(old[1], c)
		bytes[a.User] = b
		return true
	})
	n.bwPrev = cur
	if dt <= 0 {
		return nil
	}
	var out map[string]UserRate
	for user, b := range bytes {
		if b[0] == 0 && b[1] == 0 {
			continue // an idle user is not published
		}
		if out == nil {
			out = map[string]UserRate{}
		}
		limPeer, limClient := tab.UserBandwidthOf(user)
		refPeer, refClient := tab.UserBandwidthRefused(user)
		out[user] = UserRate{ToPeer: reported(float64(b[0])/dt, limPeer, refPeer), ToClient: reported(float64(b[1])/dt, limClient, refClient)}
	}
	return out
}

// reported is what a node publishes for a user's measured rate one way:
// the limit when the limiter refused a packet in the interval (the demand
// is then at least the limit, and a measured rate jitters by a packet or
// so per heartbeat, 5 kB/s for 1000-byte packets every 200 ms, which the
// other nodes would take as room to spare), else the measured rate.
func reported(rate float64, limit int64, refused bool) int64 {
	if refused && limit > 0 {
		return max(limit, int64(rate))
	}
	return int64(rate)
}

// shareBandwidth sets this node's per-user limiters from the registry as
// last read: the cap less what the other nodes relay for the user, never
// below cap/k. Users no other node reports get the full cap back.
// Heartbeat goroutine only (n.mu).
func (n *Node) shareBandwidth() {
	box := n.local.Load()
	if box == nil {
		return
	}
	tab := box.Table()
	cap := tab.UserBandwidth()
	if cap <= 0 {
		return
	}
	type sum struct {
		rate  UserRate
		nodes int64
	}
	others := map[string]*sum{}
	for _, info := range *n.nodes.Load() {
		if info.Node == n.cfg.Node {
			continue
		}
		for user, r := range info.Users {
			s := others[user]
			if s == nil {
				s = &sum{}
				others[user] = s
			}
			s.rate.ToPeer += min(max(r.ToPeer, 0), cap)
			s.rate.ToClient += min(max(r.ToClient, 0), cap)
			s.nodes++
		}
	}
	shared := make(map[string]bool, len(others))
	for user, s := range others {
		floor := cap / (s.nodes + 1)
		if tab.SetUserBandwidth(user, max(floor, cap-s.rate.ToPeer), max(floor, cap-s.rate.ToClient)) {
			shared[user] = true
		}
	}
	for user := range n.bwShared {
		if !shared[user] {
			tab.SetUserBandwidth(user, cap, cap) // no other node relays for the user now
		}
	}
	n.bwShared = shared
}

// unshareBandwidth gives every user this node lowered its full local cap
// back: Redis is unreachable, the others' reports are unknown.
// Heartbeat goroutine only (n.mu).
func (n *Node) unshareBandwidth() {
	box := n.local.Load()
	if box == nil || len(n.bwShared) == 0 {
		return
	}
	tab := box.Table()
	for user := range n.bwShared {
		tab.SetUserBandwidth(user, tab.UserBandwidth(), tab.UserBandwidth())
	}
	n.bwShared = nil
}
