package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay"
)

// Fleet-wide quotas. Each user (and client IP address) has a sorted set
// whose members are that user's allocations in the fleet, "NODE|5-TUPLE",
// scored with the time (unix ms) the count lapses: Ageing after the last
// heartbeat of the node holding it. Every heartbeat pushes the scores of
// the node's live allocations forward (and adds them back after Redis
// lost them: the re-sync); a crashed node stops doing so and its counts
// lapse within Ageing. admitScript is the one atomic step of an Allocate:
// drop lapsed members, count, and admit (add) or refuse.
//
// Error bound: a node that loses Redis admits on its local quotas only, so
// during an outage a user may hold up to user_quota allocations on each
// node; the next heartbeat after Redis returns counts them all again (a
// user then over quota keeps what they hold and cannot add more).
// A heartbeat that read the table just before an allocation ended may
// write its count back after Release removed it: that count lapses within
// Ageing, so for at most Ageing the fleet may count one allocation too
// many (refusing early, never admitting over quota).
var admitScript = redis.NewScript(`
local now, expiry, member, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZSCORE', KEYS[i], member) == false and
     redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[4 + i]) then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], expiry, member)
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 0
`)

var _ relay.Fleet = (*Node)(nil)

// quotaKeys returns the sorted sets a counts in and their limits.
func (n *Node) quotaKeys(a *allocations.Allocation) (keys []string, limits []any) {
	if n.cfg.UserQuota > 0 {
		keys, limits = append(keys, keyUserPfx+a.User), append(limits, n.cfg.UserQuota)
	}
	if n.cfg.IPQuota > 0 {
		keys, limits = append(keys, keyIPPfx+a.FiveTuple.Client.Addr().Unmap().String()), append(limits, n.cfg.IPQuota)
	}
	return keys, limits
}

// member is a's member in the quota sets.
func (n *Node) member(a *allocations.Allocation) string {
	return n.cfg.Node + "|" + a.FiveTuple.String()
}

// Admit implements relay.Fleet: one script call, bounded by
// Config.Timeout. Redis unreachable or slow admits (the local quotas still
// hold), counted in Fallbacks; while Degraded, Redis is not asked at all
// until a heartbeat gets through, so that an outage costs no Allocate a
// timeout.
func (n *Node) Admit(a *allocations.Allocation) error {
	keys, limits := n.quotaKeys(a)
	if len(keys) == 0 {
		return nil
	}
	if n.degraded.Load() {
		n.fallbacks.Add(1)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeout)
	defer cancel()
	now := time.Now()
	args := append([]any{now.UnixMilli(), now.Add(n.ageing).UnixMilli(), n.member(a), n.ageing.Milliseconds()}, limits...)
	which, err := admitScript.Run(ctx, n.rdb, keys, args...).Int()
	if err != nil {
		n.failed("allocation quota", err)
		return nil
	}
	if which == 0 {
		return nil
	}
	what := fmt.Sprintf("user %q", a.User)
	if keys[which-1] != keyUserPfx+a.User {
		what = "address " + a.FiveTuple.Client.Addr().Unmap().String()
	}
	return fmt.Errorf("cluster: %s holds %d allocations in the fleet: %w", what, limits[which-1], allocations.ErrQuota)
}

// Release implements relay.Fleet: the count is removed by a goroutine of
// Run; if its queue is full, the count lapses within Ageing instead.
func (n *Node) Release(a *allocations.Allocation) {
	keys, _ := n.quotaKeys(a)
	if len(keys) == 0 {
		return
	}
	var r [3]string
	copy(r[:2], keys)
	r[2] = n.member(a)
	select {
	case n.releases <- r:
	default:
	}
}

// releaseLoop removes released counts until ctx is done.
func (n *Node) releaseLoop(ctx context.Context) {
	for {
		var batch [][3]string
		select {
		case <-ctx.Done():
			return
		case r := <-n.releases:
			batch = append(batch, r)
		}
		for len(batch) < 256 {
			select {
			case r := <-n.releases:
				batch = append(batch, r)
				continue
			default:
			}
			break
		}
		cctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout*5)
		_, err := n.rdb.Pipelined(cctx, func(p redis.Pipeliner) error {
			for _, r := range batch {
				for _, k := range r[:2] {
					if k != "" {
						p.ZRem(cctx, k, r[2])
					}
				}
			}
			return nil
		})
		cancel()
		if err != nil && ctx.Err() == nil {
			n.failed("releasing quota counts", err) // they lapse within Ageing
		}
	}
}

// refreshQuotas queues on p the refresh of every local allocation's
// counts to expiry: the heartbeat's re-sync.
func (n *Node) refreshQuotas(ctx context.Context, p redis.Pipeliner, expiry time.Time) {
	box := n.local.Load()
	if box == nil || n.cfg.UserQuota <= 0 && n.cfg.IPQuota <= 0 {
		return
	}
	score := float64(expiry.UnixMilli())
	touched := map[string]bool{}
	box.Table().Range(func(a *allocations.Allocation) bool {
		keys, _ := n.quotaKeys(a)
		for _, k := range keys {
			p.ZAdd(ctx, k, redis.Z{Score: score, Member: n.member(a)})
			touched[k] = true
		}
		return true
	})
	for k := range touched {
		p.PExpire(ctx, k, n.ageing)
	}
}

// FleetCount returns how many allocations the fleet counts for user (for
// tests and operators); lapsed counts are not included.
func (n *Node) FleetCount(ctx context.Context, user string) (int64, error) {
	return n.rdb.ZCount(ctx, keyUserPfx+user, strconv.FormatInt(time.Now().UnixMilli(), 10), "+inf").Result()
}

// addrFamilyMatches reports whether addr is of ip's family.
func addrFamilyMatches(addr netip.AddrPort, ip netip.Addr) bool {
	return addr.Addr().Unmap().Is4() == ip.Unmap().Is4()
}
