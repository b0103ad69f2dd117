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
// The command is only CLI wiring: flags and actions over the packages that
// hold the logic. Package config declares every setting (the flags of
// serve are config.Flags), reads the TOML file strictly, validates
// (config.Resolve; errors name the TOML key and the flag and say how to
// fix the value) and runs check-config (config.Check); package node runs a
// node from the resolved settings: the relay, the admin listener, the
// credentials API, SIGHUP reload, SIGUSR1/SIGTERM drain, certificate
// watching, pprof and the systemd notification. Package probe is the probe
// client, package iceapi derives the iceServers URLs, mints their JSON and
// serves the credentials API, package auth mints and checks credentials,
// and admin.Client is what sessions, kick and drain talk to. With
// [cluster], the node joins a fleet (package cluster, wired in by
// node/cluster.go), and sessions, kick and drain --fleet reach every node
// through the fleet's Redis (cluster.go).
//
// Invariants: no package-level mutable state (flag values are read from the
// *cli.Command inside the action, so the command can run many times in one
// process, as the tests do); the process exits 0 after a graceful shutdown
// on SIGINT or SIGTERM and 1 with a one-line error otherwise; stdout carries
// only the iceServers JSON printed when no credentials are configured, logs
// go to stderr.
package main
