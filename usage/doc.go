// Package usage writes usage records: what each TURN allocation relayed,
// for billing systems. The relay makes the records (relay.Config.Usage, a
// relay.UsageSink): one when an allocation ends, and an interim one every
// relay.Config.UsageInterval ([usage] interval) for allocations that last
// longer. A Writer queues them and writes them, from one goroutine, to a
// JSONL file ([usage] file: one node) or a Redis stream ([usage] redis:
// a fleet); Consumer reads the stream as a consumer group.
//
// # Schema
//
// A record is one JSON object (Record); in the file one per line, in the
// stream the "record" field of an entry (whose "id" field is the record's
// id):
//
//	{"v":1,                                 schema version (SchemaVersion)
//	 "id":"node-a/dnehwvd4agm1-42:3",       session ":" seq: unique
//	 "session":"node-a/dnehwvd4agm1-42",    node "/" process start (base 36 ns) "-" allocation id
//	 "seq":3,                               0, 1, 2, ... within the session
//	 "type":"final",                        "interim" or "final" (the last of the session)
//	 "reason":"expired",                    final only: expired, refreshed (Refresh 0),
//	                                        kicked, connection_closed (TCP/TLS), shutdown, deleted
//	 "node":"node-a", "realm":"example.org",
//	 "user":"alice",                        quota key: the user, or a REST username's user part
//	 "username":"1767312000:alice",         USERNAME as sent
//	 "client":"198.51.100.7:50000", "transport":"udp",  client address and transport (udp, tcp, tls)
//	 "relayed":["203.0.113.1:49160"],       relayed address(es): two for a dual allocation
//	 "allocation_id":42,                    as in `postern sessions` and the logs
//	 "start":"...", "period_start":"...", "end":"...",  RFC 3339, UTC
//	 "bytes_to_peer":1200, "packets_to_peer":10,        the period's payload bytes and
//	 "bytes_to_client":900, "packets_to_client":9}      packets each way
//
// # Invariants
//
//   - A record counts the traffic of its period, from period_start (the
//     allocation's start for seq 0, else the previous record's end) to
//     end: the records of a session add up to what the allocation
//     relayed, and its final record ends the session. Bytes are payload
//     bytes (what the client's application sent and received), as in the
//     postern_relayed_bytes_total metric.
//   - Records are delivered at least once: a write that failed is written
//     again whole, so the stream (or file) may hold a record twice; add up
//     records de-duplicated by id (Totals does). A record can also be lost:
//     when the queue (QueueSize, 10 000) is full the oldest record is
//     dropped and counted (postern_usage_records_total{result="dropped"}),
//     and records still queued when the server stops after a 10 s flush
//     are dropped too; a crashed node loses what it had queued and the
//     traffic since the last interim record of each allocation.
//   - The relay never waits for this package: records are made on the
//     control plane (allocation removal, a timer), never per packet, and
//     Writer.Record only appends to the bounded queue. A Redis that is
//     down or slow costs failed writes, retried with a backoff from 0.1 s
//     to 5 s (postern_usage_write_errors_total, one log line per outage),
//     and at most the queue's memory.
//   - The file is appended with one write and one fsync per batch (at most
//     256 records): a record counts as written once it is on disk. The
//     stream gets one pipeline of XADD ... MAXLEN ~ N per batch.
//   - Traffic counted by the relay after an allocation's final record
//     (the last packets of a batch in flight as it ends) is not in any
//     record.
//
// # Consuming the stream
//
// Consumer (consume.go, tested by TestStreamRecordsAddUp) is the example:
// XGROUP CREATE ... MKSTREAM once, then XREADGROUP GROUP billing NAME
// STREAMS postern:usage 0 (what this consumer left pending) and ">" (new
// records), and XACK each record once it is stored. Store records keyed
// by id (an upsert) and sum per session.
//
// Redis was chosen, through github.com/redis/go-redis/v9, for the fleet
// (issue 15): a stream with consumer groups is a durable, acknowledged
// queue that billing systems already know, and the same server holds the
// fleet's state.
package usage
