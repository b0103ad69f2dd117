package config

import (
	"regexp"
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
			Key: "cluster.region_rules", Flag: "cluster-region-rules", Kind: KindString, Default: "",
			DefaultText: "none", Placeholder: "RULES", Category: CategoryCluster, Restart: true,
			Usage: "client address prefixes and their regions, RULES such as 10.0.0.0/8=eu,2001:db8::/32=us (a request's region wins)",
			Check: func(v any) error {
				if _, err := cluster.ParseRegionRules(v.(string)); err != nil {
					return valueErrorf("%v", err)
				}
				return nil
			},
		}),
	}
}
