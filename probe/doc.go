// Package probe tests, from where it runs, which ways into a TURN server
// work: the client side of `postern probe`.
//
// A Door is one transport and port (Doors lists the six tried: TURN over
// UDP and TCP on the TURN port, TLS on the turns: port, and all three on the
// HTTPS port firewalls let out). A Prober tries every door at once: a STUN
// Binding says whether the door is reachable and how far away it is
// (RFC 8489 §3); with a credential it then allocates (RFC 8656 §7) and sends
// a packet from the relayed address to itself, which shows the relay works
// end to end. TCP and TLS may go through an HTTP CONNECT proxy. The Report
// holds one Result per door and the iceServers (RTCConfiguration) that work
// from here; it is written as a table or as JSON.
//
// The list of doors and the words that describe results (Relay*, Word*,
// Result.Detail, Report.Verdict) are exported so that every place that shows
// a probe, the command and a browser page alike, names the same doors and
// describes each outcome in the same words.
//
// Invariants:
//
//   - Every door is bounded by Config.Timeout; Run returns when all have
//     finished and leaves no goroutine or socket behind.
//   - A TLS certificate this machine does not trust does not stop the probe
//     but is reported (Result.CertError), and its turns: URL is left out of
//     the iceServers: browsers would refuse it.
//   - A Report never holds the proxy's password.
//   - A Prober is immutable after New; it knows nothing of command-line
//     flags (errors name the Config field, the caller words them for its
//     users).
package probe
