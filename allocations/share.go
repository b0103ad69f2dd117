package allocations

// A fleet shares one user's bandwidth cap across its nodes (package
// cluster): once a heartbeat it lowers the user's limiters on this node to
// what the other nodes leave of the cap, and raises them back when they
// leave more or Redis cannot be reached. These are control-plane calls;
// the data path only ever sees the limiters' new rates (ByteRate.SetRate).

// UserBandwidth is the configured per-user cap (Config.UserBandwidth):
// bytes per second each way, 0 when unlimited.
func (t *Table) UserBandwidth() int64 { return t.cfg.UserBandwidth }

// SetUserBandwidth sets the rate of user's shared limiters on this node,
// each way, to toPeer and toClient bytes per second, each clamped to
// [1, UserBandwidth], with a burst of one second's worth (as at creation).
// It reports whether the user holds allocations here (else there is
// nothing to set: a later allocation starts at the full cap, until the
// next heartbeat).
func (t *Table) SetUserBandwidth(user string, toPeer, toClient int64) bool {
	cap := t.cfg.UserBandwidth
	if cap <= 0 {
		return false
	}
	toPeer, toClient = min(max(toPeer, 1), cap), min(max(toClient, 1), cap)
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.bw[user]
	if l == nil {
		return false
	}
	if l.ToPeer.Rate() != toPeer {
		l.ToPeer.SetRate(toPeer, toPeer)
	}
	if l.ToClient.Rate() != toClient {
		l.ToClient.SetRate(toClient, toClient)
	}
	return true
}

// UserBandwidthOf returns the rates of user's shared limiters on this
// node, each way (0, 0 when the user holds no allocation here or there is
// no cap).
func (t *Table) UserBandwidthOf(user string) (toPeer, toClient int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.bw[user]; l != nil {
		return l.ToPeer.Rate(), l.ToClient.Rate()
	}
	return 0, 0
}

// UserBandwidthRefused reports, each way, whether user's shared limiters
// on this node refused a packet since the last call (and clears the
// marks): the user's demand here exceeded the limit.
func (t *Table) UserBandwidthRefused(user string) (toPeer, toClient bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.bw[user]; l != nil {
		return l.ToPeer.Refused(), l.ToClient.Refused()
	}
	return false, false
}
