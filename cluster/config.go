package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of Config.
const (
	// DefaultHeartbeat is how often a node writes its registry entry and
	// refreshes its quota counts: the registry then shows a node's load
	// at most 2 s old, and a crashed node's entry and counts age out
	// after Ageing (three heartbeats, 6 s).
	DefaultHeartbeat = 2 * time.Second
	// DefaultTimeout bounds each Redis call on an allocation's path: a
	// local Allocate takes well under a millisecond and a Redis round trip
	// in one data centre about 0.2 ms, so 100 ms is far beyond a healthy
	// Redis and still short enough that a client's first retransmission
	// (RFC 8489 §6.2.1: RTO 500 ms) is not needed.
	DefaultTimeout = 100 * time.Millisecond
	// ageingBeats is how many heartbeats an entry outlives its last write.
	ageingBeats = 3
)

// Config configures a Node.
type Config struct {
	// URL is the Redis (or Valkey) server: redis://[USER:PASSWORD@]HOST:PORT[/DB]
	// or rediss:// for TLS. Required.
	URL string
	// Node is this node's name, unique in the fleet. Required.
	Node string
	// Region is this node's region ("eu", "us-east"); may be empty.
	Region string
	// Version is reported in the registry.
	Version string
	// Heartbeat is how often the node writes its entry; DefaultHeartbeat
	// when zero.
	Heartbeat time.Duration
	// Timeout bounds every Redis call an allocation waits for;
	// DefaultTimeout when zero.
	Timeout time.Duration
	// UserQuota and IPQuota are the fleet-wide allocation quotas per user
	// and per client IP address; 0: not counted in the fleet.
	UserQuota, IPQuota int
	// RegionRules map client address prefixes to the region whose nodes
	// serve them, longest prefix first (ParseRegionRules).
	RegionRules []RegionRule
	// Logger receives the node's logs; slog.Default() when nil.
	Logger *slog.Logger
}

// ParseURL checks a redis:// or rediss:// URL and returns the client
// options it stands for. Errors say what to write.
func ParseURL(s string) (*redis.Options, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return nil, fmt.Errorf("%q: write redis://HOST:PORT, or rediss://HOST:PORT for TLS (e.g. redis://10.0.0.5:6379/0)", s)
	}
	opts, err := redis.ParseURL(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %v (write redis://[USER:PASSWORD@]HOST:PORT[/DB])", s, err)
	}
	return opts, nil
}

// RegionRule sends clients in Prefix to the nodes of Region.
type RegionRule struct {
	Prefix netip.Prefix
	Region string
}

// ParseRegionRules parses "PREFIX=REGION,PREFIX=REGION" (e.g.
// "10.0.0.0/8=eu,2001:db8::/32=us"); the empty string is no rule.
func ParseRegionRules(s string) ([]RegionRule, error) {
	var out []RegionRule
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, region, ok := strings.Cut(item, "=")
		if !ok || strings.TrimSpace(region) == "" {
			return nil, fmt.Errorf("%q: write PREFIX=REGION, e.g. 10.0.0.0/8=eu", item)
		}
		prefix, err := netip.ParsePrefix(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%q: %q is not a CIDR prefix such as 10.0.0.0/8 or 2001:db8::/32", item, p)
		}
		out = append(out, RegionRule{Prefix: prefix.Masked(), Region: strings.TrimSpace(region)})
	}
	return out, nil
}

// regionOf returns the region of the longest rule prefix holding ip, or "".
func regionOf(rules []RegionRule, ip netip.Addr) string {
	ip = ip.Unmap()
	best, bits := "", -1
	for _, r := range rules {
		if r.Prefix.Contains(ip) && r.Prefix.Bits() > bits {
			best, bits = r.Region, r.Prefix.Bits()
		}
	}
	return best
}

// check validates cfg and fills in the defaults.
func (cfg *Config) check() (*redis.Options, error) {
	if cfg.Node == "" {
		return nil, errors.New("cluster: no node name")
	}
	if strings.ContainsAny(cfg.Node, " \t\r\n|") {
		return nil, fmt.Errorf("cluster: node name %q: no spaces or '|'", cfg.Node)
	}
	opts, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("cluster: redis %w", err)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Every call carries its own context deadline; these bound what a
	// context does not (the dial of a new connection).
	opts.DialTimeout = max(cfg.Timeout, time.Second)
	opts.ReadTimeout, opts.WriteTimeout = cfg.Timeout*2, cfg.Timeout*2
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1 // a retry would double the wait an Allocate sees
	opts.DisableIdentity = true
	// Cluster-upgrade push notifications are a Redis Enterprise feature;
	// probing for them costs a command per new connection.
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return opts, nil
}
