// Package node assembles and runs one Postern node from resolved settings
// (config.Values): the relay.Server with its authenticator and peer
// policy, the admin listener (package admin), the credentials API
// (package iceapi), the SIGHUP reload (reload.go), the SIGUSR1/SIGTERM
// drain (drain.go), certificate file watching (internal/certwatch), the
// opt-in pprof listener and the systemd readiness notification; with
// [cluster] its membership of a fleet (package cluster, cluster.go:
// joined before the relay is built, since the fleet's nonce key and
// secrets go into the authenticator and the fleet into relay.Config.Fleet),
// with [selftest] the self-test page (package selftest, selftest.go), and
// with [usage] or a fleet the usage records' writer (package usage,
// usage.go: closed after the relay's graceful stop, so the shutdown's
// records are written too).
//
// Run is the whole lifetime of a node: it builds everything from the
// settings, starts the relay, prints the iceServers JSON when it had to
// generate a secret, reloads until its context ends, then waits for the
// relay's graceful stop.
//
// Invariants:
//   - Nothing here parses or validates configuration: that is package
//     config, which Run's settings have passed (config.Resolve), and which
//     decides what a reload may change (config.TakeReloadable,
//     config.RestartChanged); a reload builds everything first, so a
//     failure changes nothing.
//   - One nonce key per run: authenticators made by reloads accept the
//     nonces of earlier ones. No allocation is touched by a reload.
//   - Every goroutine ends with Run's context (the admin listener once the
//     relay has stopped, so /readyz can say "stopping").
//   - No package-level mutable state; stdout carries only the iceServers
//     JSON of a generated secret.
package node
