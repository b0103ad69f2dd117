// Package cluster makes Postern nodes one fleet through a shared Redis (or
// Valkey): a registry of live nodes with their load, a shared nonce key and
// shared TURN REST API secrets, fleet-wide allocation quotas, the choice of
// the best node for the credentials API and for ALTERNATE-SERVER, and fleet
// operations (sessions, kick, drain) delivered to the node that owns them.
//
// # Why Redis, and go-redis
//
// Redis and Valkey speak the same protocol (RESP) and have the few
// primitives a fleet needs (keys with a TTL, sorted sets, Lua scripts that
// run atomically, pub/sub), and most operators run one already. The client
// is github.com/redis/go-redis/v9, the most used Go client, maintained by
// Redis: it has Lua scripting (EVALSHA with fallback), pub/sub that
// reconnects by itself, pipelines, and honours context deadlines on every
// call, which is what keeps a slow Redis off the allocation path.
// valkey-go would do as well; go-redis was picked for its reach and
// because it speaks to both servers. The keys assume one Redis (with
// replicas or Sentinel), not Redis Cluster: a quota script touches two
// keys that hash slots would put apart.
//
// # Job
//
// A Node writes its registry entry (Info: region, state, version, load,
// ICE URLs, admin address) every Config.Heartbeat with a TTL of Ageing
// (three heartbeats), and reads the others'. It implements relay.Fleet:
// Admit counts an allocation against the user's and the address's
// fleet-wide quota in one Lua script (quota.go), Release uncounts it, and
// Alternate names the best other node. Pick chooses nodes for the
// credentials API (pick.go). Fleet operations arrive over pub/sub (ops.go).
// The per-user bandwidth cap is shared through the heartbeat: each entry
// carries what each capped user relayed through the node (Info.Users),
// and each node sets its users' limiters to the cap less what the others
// report, never below cap/k (bandwidth.go). A process that relays
// nothing (postern api) serves the fleet's credentials API with Watch,
// which reads the registry and the secrets without registering, and
// NewAPI (api.go).
//
// # Error bound of the shared bandwidth cap
//
// With k nodes carrying a user and a heartbeat H: with demand steady,
// the fleet relays the cap; for at most 3·H after the demand moves
// between nodes (or starts on one, which begins at the full cap) it may
// relay up to k·cap, at most 3·H·(k−1)·cap bytes over the cap per change;
// each node's limiter also lets one second of its rate (at least 65 535
// bytes) through after the user was idle there, as on one node. With
// Redis unreachable each node enforces the full cap alone (k·cap at
// most). TestUserBandwidthAcrossNodes (steady demand) and
// TestUserBandwidthDemandMoves (a change) measure it with two nodes.
//
// # Invariants
//
//   - Redis never stops allocation or media. Every call an Allocate waits
//     for is bounded by Config.Timeout (DefaultTimeout); a failure admits
//     on the relay's local quotas, counts a fallback (Fallbacks), logs (at
//     most every 10 s) and marks the node Degraded, and while degraded
//     Allocates do not ask Redis at all. The next heartbeat that gets
//     through re-syncs: it rewrites the entry, every local allocation's
//     quota counts and the nonce key, and clears Degraded. The data plane
//     never calls this package.
//   - Counts of a crashed node lapse: each quota count is scored with the
//     time it lapses, Ageing after its node's last heartbeat, and the
//     script drops lapsed counts before counting.
//   - A silent node (no heartbeat within Ageing) or a draining one is
//     never chosen by Pick or Alternate.
//   - The shared bandwidth cap changes only the rates of the per-user
//     limiters (allocations.ByteRate.SetRate), once a heartbeat: the data
//     plane stays lock-free and allocation-free.
//   - Nothing here holds package-level state; every goroutine (heartbeat,
//     operations, releases) ends when Run's context is cancelled.
package cluster
