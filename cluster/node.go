package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay"
)

// The keys, all under one prefix so that a Redis shared with other
// programs is not disturbed.
const (
	keyPrefix   = "postern:"
	keyNodes    = keyPrefix + "nodes"     // sorted set: node name → entry expiry (unix ms)
	keyNodePfx  = keyPrefix + "node:"     // + name: the node's Info as JSON, with a TTL
	keyNonceKey = keyPrefix + "nonce_key" // the fleet's nonce key, hex
	keySecrets  = keyPrefix + "secrets"   // list: TURN REST API secrets, first mints
	keyUserPfx  = keyPrefix + "quota:user:"
	keyIPPfx    = keyPrefix + "quota:ip:"
	keyReplyPfx = keyPrefix + "reply:"
	channelOps  = keyPrefix + "ops" // pub/sub: fleet operations (ops.go)
)

// States a node is in, as the registry shows it.
const (
	StateReady    = "ready"
	StateDraining = "draining"
)

// Info is one node's registry entry, written every heartbeat.
type Info struct {
	Node    string `json:"node"`
	Region  string `json:"region,omitempty"`
	State   string `json:"state"`
	Version string `json:"version,omitempty"`
	// Load: live allocations, relayed bits per second (both directions,
	// averaged over the last heartbeat) and CPU (the process's share of
	// the host's CPUs over the last heartbeat, 0 to 1).
	Allocations   int     `json:"allocations"`
	BitsPerSecond float64 `json:"bits_per_second"`
	CPU           float64 `json:"cpu"`
	// URLs are the node's ICE server URLs, as iceapi derives them.
	URLs []string `json:"urls"`
	// Admin is the node's admin listener (HOST:PORT), "" when off.
	Admin string `json:"admin,omitempty"`
	// Users are the rates of the users under [limits] user_bandwidth
	// who relayed through the node over the last heartbeat, for the
	// fleet's shared cap (bandwidth.go); idle users are left out.
	Users   map[string]UserRate `json:"users,omitempty"`
	Updated time.Time           `json:"updated"`
}

// Local is the relay a Node reports on and acts upon; *relay.Server
// implements it.
type Local interface {
	Stats() relay.Stats
	Draining() bool
	SetDraining(bool)
	Kick(id uint64) bool
	KickUser(user string) int
	Sessions(user string) []relay.Session
	Table() *allocations.Table
}

var (
	_ Local       = (*relay.Server)(nil)
	_ admin.Fleet = (*Node)(nil)
)

// Node is this relay's membership of the fleet. Build it with New, give it
// its relay with Attach, and run it with Run. It implements relay.Fleet.
type Node struct {
	cfg    Config
	rdb    *redis.Client
	log    *slog.Logger
	ageing time.Duration

	local atomic.Pointer[localBox]
	urls  atomic.Pointer[[]string]
	admin atomic.Pointer[string]
	nodes atomic.Pointer[[]Info] // the live registry, as last read

	secrets   atomic.Pointer[[]string]
	onSecrets atomic.Pointer[func([]string)] // nil: nobody listens

	nonceKey atomic.Pointer[[]byte] // written back after a Redis restart

	degraded  atomic.Bool   // Redis unreachable: quotas local only
	fallbacks atomic.Uint64 // calls that fell back to local behaviour
	lastWarn  atomic.Int64  // unix ns of the last "Redis unreachable" line

	releases chan [3]string // user key, IP key, member (quota.go)
	beat     chan struct{}  // asks for a heartbeat now
	// ops is the subscription to fleet operations, made by New so that an
	// operation published once New has returned reaches this node
	// (Client.Do counts PUBLISH's receivers as the nodes to wait for).
	ops *redis.PubSub
	// publishedDraining is the state the last entry written said.
	publishedDraining atomic.Bool

	// bwPrev are the allocations' byte counters at the previous sample,
	// bwShared the users whose limiters this node lowered (bandwidth.go;
	// heartbeat goroutine only).
	bwPrev   map[*allocations.Allocation][2]uint64
	bwShared map[string]bool
	// sample is the previous load sample (heartbeat goroutine only).
	sample struct {
		at    time.Time
		bytes uint64
		cpu   time.Duration
	}
	mu sync.Mutex // serialises heartbeats (Run and Beat)
}

type localBox struct{ Local }

// New checks cfg and returns a Node; it does not contact Redis yet.
func New(cfg Config) (*Node, error) {
	opts, err := cfg.check()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, rdb: redis.NewClient(opts), log: cfg.Logger.With("node", cfg.Node),
		ageing:   ageingBeats * cfg.Heartbeat,
		releases: make(chan [3]string, 4096),
		beat:     make(chan struct{}, 1),
	}
	n.nodes.Store(&[]Info{})
	n.secrets.Store(&[]string{})
	n.ops = n.rdb.Subscribe(context.Background(), channelOps)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	// The confirmation, bounded: with Redis down the subscription is made
	// when it answers (the PubSub reconnects and resubscribes by itself).
	_, _ = n.ops.Receive(ctx)
	return n, nil
}

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.Node }

// Region is this node's region.
func (n *Node) Region() string { return n.cfg.Region }

// Attach gives the node its relay, its ICE URLs and its admin address;
// the next heartbeat publishes them.
func (n *Node) Attach(l Local, urls []string, admin string) {
	n.local.Store(&localBox{l})
	n.SetURLs(urls)
	n.admin.Store(&admin)
}

// SetURLs replaces the ICE URLs the registry lists for this node.
func (n *Node) SetURLs(urls []string) { u := slices.Clone(urls); n.urls.Store(&u) }

// OnSecrets sets the function called (on the heartbeat's goroutine) when
// the fleet's secrets (Secrets) change.
func (n *Node) OnSecrets(f func([]string)) { n.onSecrets.Store(&f) }

// Secrets are the TURN REST API secrets of the fleet, as last read from
// Redis's list postern:secrets (first mints); none when the list is empty.
func (n *Node) Secrets() []string { return slices.Clone(*n.secrets.Load()) }

// Nodes is the live registry as last read: nodes whose entry was written
// within the last Ageing, this one included.
func (n *Node) Nodes() []Info { return slices.Clone(*n.nodes.Load()) }

// LiveNodes is how many nodes the registry lists (admin.Fleet).
func (n *Node) LiveNodes() int { return len(*n.nodes.Load()) }

// Ageing is how long an entry or a quota count outlives its last write:
// three heartbeats.
func (n *Node) Ageing() time.Duration { return n.ageing }

// Degraded reports whether Redis was unreachable at the last call: quotas
// are then local only, the registry and secrets as last read.
func (n *Node) Degraded() bool { return n.degraded.Load() }

// Fallbacks counts the calls that could not reach Redis and fell back
// (admitted an allocation on local quotas, skipped a heartbeat).
func (n *Node) Fallbacks() uint64 { return n.fallbacks.Load() }

// Close closes the connections to Redis.
func (n *Node) Close() error {
	_ = n.ops.Close() // also closed when Run ends: a second Close is harmless
	return n.rdb.Close()
}

// failed records an unreachable Redis: a metric, and a log line at most
// every 10 s.
func (n *Node) failed(what string, err error) {
	n.fallbacks.Add(1)
	if !n.degraded.Swap(true) {
		n.log.Warn("cluster: Redis unreachable: allocation and media go on with local quotas and the last registry",
			"during", what, "err", err)
		n.lastWarn.Store(time.Now().UnixNano())
		return
	}
	now := time.Now().UnixNano()
	if last := n.lastWarn.Load(); now-last > int64(10*time.Second) && n.lastWarn.CompareAndSwap(last, now) {
		n.log.Warn("cluster: Redis still unreachable", "during", what, "err", err, "fallbacks", n.fallbacks.Load())
	}
}

// recovered records a successful heartbeat after a failure.
func (n *Node) recovered() {
	if n.degraded.Swap(false) {
		n.log.Info("cluster: Redis reachable again: registry, nonce key and quota counts re-synced")
	}
}

// Run sends heartbeats, serves fleet operations and releases quota counts
// until ctx is cancelled, then removes this node's entry (best effort).
func (n *Node) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { n.serveOps(ctx) })
	wg.Go(func() { n.releaseLoop(ctx) })
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	// A drain started locally (SIGUSR1, the admin API) is published at
	// once rather than at the next heartbeat: the credentials API of
	// other nodes stops handing this one out within a tenth of a second.
	watch := time.NewTicker(min(n.cfg.Heartbeat/4, 100*time.Millisecond))
	defer watch.Stop()
	_ = n.Beat(ctx)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			n.leave()
			return
		case <-t.C:
		case <-n.beat:
		case <-watch.C:
			box := n.local.Load()
			if box == nil || box.Draining() == n.publishedDraining.Load() {
				continue
			}
		}
		_ = n.Beat(ctx)
	}
}

// BeatSoon asks Run for a heartbeat now (after a drain, say), without
// waiting for it.
func (n *Node) BeatSoon() {
	select {
	case n.beat <- struct{}{}:
	default:
	}
}

// leave removes this node from the registry.
func (n *Node) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeout*5)
	defer cancel()
	_, _ = n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, keyNodePfx+n.cfg.Node)
		p.ZRem(ctx, keyNodes, n.cfg.Node)
		return nil
	})
}

// Beat runs one heartbeat: writes this node's entry, refreshes its quota
// counts, writes the nonce key back if Redis lost it, and reads the
// registry and the secrets. It returns an error when Redis could not be
// reached (also counted and logged).
func (n *Node) Beat(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	// The heartbeat waits for nobody's request, so it may take longer
	// than one call on an allocation's path.
	bctx, cancel := context.WithTimeout(ctx, max(n.cfg.Timeout*5, n.cfg.Heartbeat/2))
	defer cancel()
	if err := n.beat1(bctx); err != nil {
		if ctx.Err() == nil { // not a shutdown
			n.failed("heartbeat", err)
			n.unshareBandwidth()
		}
		return err
	}
	n.recovered()
	n.shareBandwidth()
	return nil
}

func (n *Node) beat1(ctx context.Context) error {
	now := time.Now()
	info := n.info(now)
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("cluster: encoding the registry entry: %w", err)
	}
	expiry := now.Add(n.ageing)
	_, err = n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keyNodePfx+n.cfg.Node, b, n.ageing)
		p.ZAdd(ctx, keyNodes, redis.Z{Score: float64(expiry.UnixMilli()), Member: n.cfg.Node})
		p.ZRemRangeByScore(ctx, keyNodes, "-inf", fmt.Sprint(now.UnixMilli()))
		if k := n.nonceKey.Load(); k != nil {
			// Redis restarted empty: the fleet's key comes back from
			// the first node to beat (every node holds the same one).
			p.SetNX(ctx, keyNonceKey, fmt.Sprintf("%x", *k), 0)
		}
		n.refreshQuotas(ctx, p, expiry)
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: heartbeat: %w", err)
	}
	if err := n.readRegistry(ctx, now); err != nil {
		return err
	}
	return n.readSecrets(ctx)
}

// info is this node's entry now, with the load since the last heartbeat.
func (n *Node) info(now time.Time) Info {
	info := Info{Node: n.cfg.Node, Region: n.cfg.Region, State: StateReady, Version: n.cfg.Version, Updated: now}
	if u := n.urls.Load(); u != nil {
		info.URLs = *u
	}
	if a := n.admin.Load(); a != nil {
		info.Admin = *a
	}
	box := n.local.Load()
	if box == nil {
		// Not serving yet: listed so that its secrets and nonce key are
		// shared, never chosen (no URLs, and draining).
		info.State = StateDraining
		return info
	}
	st := box.Stats()
	draining := box.Draining()
	if draining {
		info.State = StateDraining
	}
	n.publishedDraining.Store(draining) // written even if the heartbeat fails: retried at the next
	info.Allocations = st.AllocationsActive
	bytes := st.ToPeer.Bytes + st.ToClient.Bytes
	cpu := processCPU()
	var dt float64
	if prev := n.sample; !prev.at.IsZero() {
		if dt = now.Sub(prev.at).Seconds(); dt > 0 {
			if bytes >= prev.bytes {
				info.BitsPerSecond = float64(bytes-prev.bytes) * 8 / dt
			}
			info.CPU = min(1, (cpu-prev.cpu).Seconds()/dt/float64(runtime.NumCPU()))
		}
	}
	n.sample.at, n.sample.bytes, n.sample.cpu = now, bytes, cpu
	if tab := box.Table(); tab.UserBandwidth() > 0 {
		info.Users = n.userRates(tab, dt)
	}
	return info
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readRegistry reads the live entries into n.nodes.
func (n *Node) readRegistry(ctx context.Context, now time.Time) error {
	names, err := n.rdb.ZRangeByScore(ctx, keyNodes, &redis.ZRangeBy{Min: fmt.Sprint(now.UnixMilli()), Max: "+inf"}).Result()
	if err != nil {
		return fmt.Errorf("cluster: reading the registry: %w", err)
	}
	var nodes []Info
	if len(names) > 0 {
		keys := make([]string, len(names))
		for i, name := range names {
			keys[i] = keyNodePfx + name
		}
		vals, err := n.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return fmt.Errorf("cluster: reading the registry: %w", err)
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue // expired between the two reads: silent
			}
			var info Info
			if err := json.Unmarshal([]byte(s), &info); err != nil || info.Node != names[i] {
				n.log.Warn("cluster: ignoring a malformed registry entry", "key", keys[i], "err", err)
				continue
			}
			nodes = append(nodes, info)
		}
	}
	slices.SortFunc(nodes, func(a, b Info) int { return strings.Compare(a.Node, b.Node) })
	n.nodes.Store(&nodes)
	return nil
}

// readSecrets reads the fleet's secrets and tells OnSecrets when they
// changed.
func (n *Node) readSecrets(ctx context.Context) error {
	list, err := n.rdb.LRange(ctx, keySecrets, 0, -1).Result()
	if err != nil {
		return fmt.Errorf("cluster: reading %s: %w", keySecrets, err)
	}
	list = slices.DeleteFunc(list, func(s string) bool { return s == "" })
	if old := *n.secrets.Load(); slices.Equal(old, list) {
		return nil
	}
	n.secrets.Store(&list)
	n.log.Info("cluster: fleet secrets changed", "secrets", len(list))
	if f := n.onSecrets.Load(); f != nil {
		(*f)(slices.Clone(list))
	}
	return nil
}

// LoadSecrets reads the fleet's secrets once (at start, before the
// authenticator is built); Secrets returns them afterwards.
func (n *Node) LoadSecrets(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout*5)
	defer cancel()
	list, err := n.rdb.LRange(ctx, keySecrets, 0, -1).Result()
	if err != nil {
		n.failed("reading secrets", err)
		return fmt.Errorf("cluster: reading %s: %w", keySecrets, err)
	}
	list = slices.DeleteFunc(list, func(s string) bool { return s == "" })
	n.secrets.Store(&list)
	return nil
}
