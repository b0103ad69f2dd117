package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/postern/postern/cluster"
)

// CategoryCluster is the --help category of [cluster].
const CategoryCluster = "Fleet (cluster)"

// nodeName is what cluster.node and cluster.region may hold: they go into
// Redis keys, metrics labels and log lines.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// clusterSettings are the [cluster] table: a fleet of nodes sharing a
// Redis (package cluster). All restart-only; read by the command
// (cmd/postern's cluster wiring), not by the relay. redis empty is a node
// alone, as before.
func clusterSettings() []Setting {
	duration := func(key, flag string, def time.Duration, usage string) Setting {
		return Setting{
			Key: key, Flag: flag, Kind: KindDuration, Default: def, ZeroIsDefault: true,
			Placeholder: "D", Category: CategoryCluster, Restart: true, Usage: usage,
			Check: func(v any) error {
				if d := v.(time.Duration); d < 0 {
					return valueErrorf("%v: write a positive duration such as %q", d, def.String())
				}
				return nil
			},
		}
	}
	needsRedis := func(s Setting) Setting {
		s.Requires, s.RequiresFix = "cluster.redis", "set cluster.redis (--cluster-redis) to the fleet's Redis, or remove this key"
		return s
	}
	return []Setting{
		{
			Key: "cluster.redis", Flag: "cluster-redis", Kind: KindString, Default: "",
			DefaultText: "off", Placeholder: "URL", Category: CategoryCluster, Restart: true,
			Usage: "join the fleet whose shared state is the Redis (or Valkey) at URL, redis://HOST:PORT or rediss://HOST:PORT (TLS)",
			Check: func(v any) error {
				if _, err := cluster.ParseURL(v.(string)); err != nil {
					return valueErrorf("%v", err)
				}
				return nil
			},
		},
		needsRedis(Setting{
			Key: "cluster.node", Flag: "cluster-node", Kind: KindString, Default: "",
			DefaultText: "the host name", Placeholder: "NAME", Category: CategoryCluster, Restart: true,
			Usage: "this node's name NAME, unique in the fleet",
			Check: func(v any) error {
				if s := v.(string); len(s) > 64 || !nodeName.MatchString(s) {
					return valueErrorf("%q: write at most 64 letters, digits, '.', '_' or '-'", s)
				}
				return nil
			},
		}),
		needsRedis(Setting{
			Key: "cluster.region", Flag: "cluster-region", Kind: KindString, Default: "",
			DefaultText: "none", Placeholder: "REGION", Category: CategoryCluster, Restart: true,
			Usage: "this node's region REGION (the credentials API prefers nodes of the caller's region)",
			Check: func(v any) error {
				if s := v.(string); len(s) > 64 || !nodeName.MatchString(s) {
					return valueErrorf("%q: write at most 64 letters, digits, '.', '_' or '-'", s)
				}
				return nil
			},
		}),
		needsRedis(duration("cluster.heartbeat", "cluster-heartbeat", cluster.DefaultHeartbeat,
			"how often the node writes its load to the registry, a duration D; a node silent for 3 heartbeats is out")),
		needsRedis(duration("cluster.timeout", "cluster-timeout", cluster.DefaultTimeout,
			"the longest an Allocate waits for Redis, a duration D; after it the node goes on with local quotas")),
		needsRedis(Setting{
			Key: "cluster.nonce_key_file", Flag: "cluster-nonce-key-file", Kind: KindString, Default: "",
			DefaultText: "shared through Redis", Placeholder: "FILE", Category: CategoryCluster, Restart: true,
			Usage: "read the fleet's nonce key from FILE (at least 32 characters, e.g. from openssl rand -hex 32)",
			Check: func(v any) error {
				if _, err := cluster.ReadNonceKeyFile(v.(string)); err != nil {
					return valueErrorf("%v", err)
				}
				return nil
			},
		}),
		needsRedis(Setting{
			Key: "cluster.region_rules", Flag: "cluster-region-rules", Kind: KindStrings, Default: []string(nil),
			DocDefault: "none", Placeholder: "RULE", Category: CategoryCluster, Restart: true,
			Usage: "client address prefix and its region, RULE such as 10.0.0.0/8=eu (repeatable; replaces the file's list; a request's region wins)",
			// The list; the one string of commas written before stays valid.
			Decode: oneOrMany(`write a list of PREFIX=REGION, e.g. ["10.0.0.0/8=eu", "2001:db8::/32=us"]`),
			Check: func(v any) error {
				if _, err := regionRules(v.([]string)); err != nil {
					return valueErrorf("%v", err)
				}
				return nil
			},
		}),
	}
}

// regionRules parses cluster.region_rules: each item PREFIX=REGION (an
// item may still hold several, separated by commas, as the one string
// of before did).
func regionRules(items []string) ([]cluster.RegionRule, error) {
	return cluster.ParseRegionRules(strings.Join(items, ","))
}

// ClusterOf is the fleet configuration of the resolved v, or nil when
// cluster.redis is empty (a node alone). The node's name defaults to the
// host name. Version and Logger are the caller's.
func ClusterOf(v Values) (*cluster.Config, error) {
	get := getter(v)
	url := get("cluster.redis").(string)
	if url == "" {
		return nil, nil
	}
	name := get("cluster.node").(string)
	if name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("cluster.node (--cluster-node): the host has no name (%v): name this node", err)
		}
		name = h
	}
	rules, _ := regionRules(get("cluster.region_rules").([]string)) // checked
	return &cluster.Config{
		URL: url, Node: name, Region: get("cluster.region").(string),
		Heartbeat: get("cluster.heartbeat").(time.Duration), Timeout: get("cluster.timeout").(time.Duration),
		UserQuota: get("limits.user_quota").(int), IPQuota: get("limits.ip_quota").(int),
		RegionRules: rules,
	}, nil
}

// NonceKeyFile is the resolved cluster.nonce_key_file of v.
func NonceKeyFile(v Values) string { return Get(Settings(), v, "cluster.nonce_key_file").(string) }
