// Command postern runs the Postern STUN/TURN relay.
//
//	postern serve [--config FILE] [flags]
//	postern credential [--secret-file FILE] [--user NAME] [--ttl D] [--json]
//	postern credential hash --user NAME [--realm R] < password
//	postern ice-servers --host NAME | --config FILE [flags]
//	postern check-config FILE
//	postern sessions [--user NAME] [--json] [--admin ADDR] [--config FILE] [--fleet]
//	postern kick ID... | --user NAME [--admin ADDR] [--config FILE]
//	postern kick --fleet NODE/ID... | --user NAME [--cluster-redis URL]
//	postern drain [--undo] [--admin ADDR] [--config FILE] [--fleet [--node NAME]]
//	postern probe HOST [--user NAME --password P | --secret S] [--proxy URL] [--json]
//	postern api --config FILE [--listen ADDR]
//
// The command only turns configuration into typed values and wires the
// packages together; the domain logic lives in them: package probe is the
// probe client, package iceapi derives the iceServers URLs and serves the
// credentials API, package auth mints and checks credentials, package
// internal/certwatch watches certificate files. A TOML file (Config, read
// strictly: unknown keys are errors) is read first, then command-line flags override it, then the
// result is validated into settings and handed to relay.New. Validation
// errors name both the TOML key and the flag and say how to fix the value.
// SIGHUP makes serve read and validate the configuration again and swap in
// the credentials, the peer policy and the credentials API's settings
// without touching an allocation (reload.go). serve also runs the admin
// listener (package admin: metrics, health, sessions; operate.go), which
// sessions and kick talk to, and tells systemd when it is ready. With
// [cluster], serve joins a fleet (package cluster; all of its wiring is
// cluster.go), and sessions, kick and drain --fleet reach every node
// through the fleet's Redis.
//
// Invariants: no package-level mutable state (flag values are read from the
// *cli.Command inside the action, so the command can run many times in one
// process, as the tests do); the process exits 0 after a graceful shutdown
// on SIGINT or SIGTERM and 1 with a one-line error otherwise; stdout carries
// only the iceServers JSON printed when no credentials are configured, logs
// go to stderr.
package main
