package admin

import (
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metric describes one postern_ metric: its name, help and labels. The
// list below is the documented set (README "Operations"); a test checks
// the README and the Grafana dashboard against it.
type metric struct {
	name, help string
	kind       prometheus.ValueType
	labels     []string
}

// Metric names.
const (
	mBuildInfo          = "postern_build_info"
	mReady              = "postern_ready"
	mAllocationsActive  = "postern_allocations_active"
	mAllocationsTotal   = "postern_allocations_total"
	mAllocationsEnded   = "postern_allocations_ended_total"
	mPermissionsActive  = "postern_permissions_active"
	mChannelsActive     = "postern_channels_active"
	mRelayedPackets     = "postern_relayed_packets_total"
	mRelayedBytes       = "postern_relayed_bytes_total"
	mDroppedPackets     = "postern_dropped_packets_total"
	mAuthFailures       = "postern_auth_failures_total"
	mStaleNonces        = "postern_stale_nonces_total"
	mRequests           = "postern_requests_total"
	mRequestErrors      = "postern_request_errors_total"
	mTLSHandshakes      = "postern_tls_handshakes_total"
	mRelayPortsInUse    = "postern_relay_ports_in_use"
	mRelayPortsCapacity = "postern_relay_ports_capacity"
	mNodeInfo           = "postern_node_info"
	mClusterRedisUp     = "postern_cluster_redis_up"
	mClusterFallbacks   = "postern_cluster_fallbacks_total"
	mClusterNodes       = "postern_cluster_nodes"
	mUsageRecords       = "postern_usage_records_total"
	mUsageWriteErrors   = "postern_usage_write_errors_total"
)

// metrics is the documented set of postern_ metrics.
var metrics = []metric{
	{mBuildInfo, "Always 1; the labels say which Postern and Go built this process.", prometheus.GaugeValue, []string{"version", "goversion"}},
	{mReady, "1 when every listener is bound and the server is neither draining nor stopping (as /readyz), else 0.", prometheus.GaugeValue, nil},
	{mAllocationsActive, "Live TURN allocations, by the listener and client transport they came through.", prometheus.GaugeValue, []string{"listener", "transport"}},
	{mAllocationsTotal, "TURN allocations created since start, by listener and client transport.", prometheus.CounterValue, []string{"listener", "transport"}},
	{mAllocationsEnded, "TURN allocations ended since start, by listener, client transport and reason (expired, deleted: Refresh 0, closed connection or kick, closed: shutdown).", prometheus.CounterValue, []string{"listener", "transport", "reason"}},
	{mPermissionsActive, "Live permissions (RFC 8656 §9) over every allocation.", prometheus.GaugeValue, nil},
	{mChannelsActive, "Live channel bindings (RFC 8656 §12) over every allocation.", prometheus.GaugeValue, nil},
	{mRelayedPackets, "Packets relayed, by direction (to_peer: client to peers, to_client: peers to clients).", prometheus.CounterValue, []string{"direction"}},
	{mRelayedBytes, "Payload bytes relayed, by direction (to_peer, to_client).", prometheus.CounterValue, []string{"direction"}},
	{mDroppedPackets, "Packets the server discarded, by reason.", prometheus.CounterValue, []string{"reason"}},
	{mAuthFailures, "Requests whose credentials did not verify, by reason (no_username, unknown_user, expired, bad_integrity, other).", prometheus.CounterValue, []string{"reason"}},
	{mStaleNonces, "438 Stale Nonce answers: routine, clients renewing their nonce.", prometheus.CounterValue, nil},
	{mRequests, "STUN/TURN requests received, by method.", prometheus.CounterValue, []string{"method"}},
	{mRequestErrors, "Error responses sent, by request method and STUN error code (401 includes the routine first challenge; 486 is a quota, 508 capacity, 403 the peer policy).", prometheus.CounterValue, []string{"method", "code"}},
	{mTLSHandshakes, "TLS handshakes on tls:// and tcp+tls:// listeners, by result (ok, failed).", prometheus.CounterValue, []string{"result"}},
	{mRelayPortsInUse, "Relay sockets open, by the local address they are bound on.", prometheus.GaugeValue, []string{"relay_ip"}},
	{mRelayPortsCapacity, "Ports in the relay port range: the most relay sockets one relay address can hold.", prometheus.GaugeValue, nil},
	// Exported only by a node of a fleet (Config.Fleet; [cluster]).
	{mNodeInfo, "Always 1 on a node of a fleet; the labels name the node and its region.", prometheus.GaugeValue, []string{"node", "region"}},
	{mClusterRedisUp, "1 when the fleet's Redis answered the node's last call, 0 while the node runs on local quotas.", prometheus.GaugeValue, nil},
	{mClusterFallbacks, "Calls to the fleet's Redis that failed or timed out, each falling back to local behaviour (admitting on local quotas, skipping a heartbeat).", prometheus.CounterValue, nil},
	{mClusterNodes, "Live nodes in the fleet's registry as this node last read it, itself included.", prometheus.GaugeValue, nil},
	{mUsageRecords, "Usage records ([usage]) by result: written to the file or stream, or dropped (the oldest, from a full queue while the sink was down or slow).", prometheus.CounterValue, []string{"result"}},
	{mUsageWriteErrors, "Failed writes of usage records to the file or stream (each retried).", prometheus.CounterValue, nil},
}

// collector turns Relay.Stats into metrics at scrape time.
type collector struct {
	relay   Relay
	fleet   Fleet // nil: no fleet metrics
	version string
	descs   map[string]desc
}

type desc struct {
	*prometheus.Desc
	kind prometheus.ValueType
}

func newCollector(r Relay, f Fleet, version string) *collector {
	c := &collector{relay: r, fleet: f, version: version, descs: make(map[string]desc, len(metrics))}
	for _, m := range metrics {
		c.descs[m.name] = desc{prometheus.NewDesc(m.name, m.help, m.labels, nil), m.kind}
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range metrics {
		ch <- c.descs[m.name].Desc
	}
}

// Collect implements prometheus.Collector: one Stats snapshot per scrape.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.relay.Stats()
	emit := func(name string, v float64, labels ...string) {
		d := c.descs[name]
		ch <- prometheus.MustNewConstMetric(d.Desc, d.kind, v, labels...)
	}
	emit(mBuildInfo, 1, c.version, runtime.Version())
	ready := 0.0
	if c.relay.Ready() {
		ready = 1
	}
	emit(mReady, ready)

	for _, l := range st.Listeners {
		emit(mAllocationsActive, float64(l.Active), l.Listener, l.Transport)
		emit(mAllocationsTotal, float64(l.Created), l.Listener, l.Transport)
		for reason, n := range l.Ended {
			emit(mAllocationsEnded, float64(n), l.Listener, l.Transport, reason)
		}
	}
	emit(mPermissionsActive, float64(st.Permissions))
	emit(mChannelsActive, float64(st.Channels))

	emit(mRelayedPackets, float64(st.ToPeer.Packets), "to_peer")
	emit(mRelayedPackets, float64(st.ToClient.Packets), "to_client")
	emit(mRelayedBytes, float64(st.ToPeer.Bytes), "to_peer")
	emit(mRelayedBytes, float64(st.ToClient.Bytes), "to_client")
	for reason, n := range st.Drops {
		emit(mDroppedPackets, float64(n), reason)
	}
	for reason, n := range st.AuthFailuresByReason {
		emit(mAuthFailures, float64(n), reason)
	}
	emit(mStaleNonces, float64(st.StaleNonces))
	for method, n := range st.Requests {
		emit(mRequests, float64(n), method)
	}
	for k, n := range st.RequestErrors {
		emit(mRequestErrors, float64(n), k.Method, strconv.Itoa(k.Code))
	}
	emit(mTLSHandshakes, float64(st.TLSHandshakes), "ok")
	emit(mTLSHandshakes, float64(st.TLSHandshakeFailures), "failed")
	for ip, n := range st.RelayPortsInUse {
		emit(mRelayPortsInUse, float64(n), ip.String())
	}
	emit(mRelayPortsCapacity, float64(st.RelayPorts.Len()))
	if f := c.fleet; f != nil {
		emit(mNodeInfo, 1, f.Name(), f.Region())
		up := 1.0
		if f.Degraded() {
			up = 0
		}
		emit(mClusterRedisUp, up)
		emit(mClusterFallbacks, float64(f.Fallbacks()))
		emit(mClusterNodes, float64(f.LiveNodes()))
	}
	emit(mUsageRecords, float64(st.Usage.Written), "written")
	emit(mUsageRecords, float64(st.Usage.Dropped), "dropped")
	emit(mUsageWriteErrors, float64(st.Usage.WriteErrors))
}

// MetricNames returns the names of the postern_ metrics, in documentation
// order.
func MetricNames() []string {
	names := make([]string, len(metrics))
	for i, m := range metrics {
		names[i] = m.name
	}
	return names
}
