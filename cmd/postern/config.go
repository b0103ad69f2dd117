package main

import (
	"github.com/urfave/cli/v3"

	"github.com/postern/postern/config"
	"github.com/postern/postern/node"
)

// Command-line flag names shared by several commands. The flags of the
// settings themselves come from their declarations (config.Flags).
const (
	flagConfig = "config"
	flagRealm  = "realm" // declared in package config; credential hash has its own
	flagUser   = "user"
	flagSecret = "secret"
	flagAdmin  = "admin"
	// flagAdminToken may be given as $POSTERN_ADMIN_TOKEN (config.EnvAdminToken).
	flagAdminToken = "admin-token"
)

// configFlags returns fresh flags for every declared setting, with --config
// and --pprof. Repeatable flags take one value per use (commas are not
// separators: passwords and secrets may contain them).
func configFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: flagConfig, Aliases: []string{"c"}, TakesFile: true,
			Usage: "read settings from the TOML `FILE` (see config.toml.example); flags override it"},
		&cli.StringFlag{Name: node.FlagPprof, Category: config.CategoryLog,
			Usage: "debug: serve Go profiles on http://`ADDR`/debug/pprof/ (profile?seconds=N, heap, allocs, goroutine, ...); " +
				"ADDR must be a loopback HOST:PORT",
			DefaultText: "off"},
	}, config.Flags(config.Settings())...)
}

// loadSettings reads --config (if given), applies the flags over it and
// validates the result.
func loadSettings(cmd *cli.Command) (config.Values, error) {
	return config.FromCommand(cmd, flagConfig)
}

// envAdminAddr may hold the admin address for the admin clients (sessions,
// kick, drain): a Kubernetes preStop hook runs "postern drain" without a
// shell to expand the node's address into a flag, but with the
// container's environment, where "$(HOST_IP):9641" is expanded.
const envAdminAddr = "POSTERN_ADMIN"

// adminClientAddrFlag and adminTokenFlag are --admin and --admin-token of
// the admin listener's clients (sessions, kick, drain); --admin is also
// read from $POSTERN_ADMIN (serve's --admin is not).
func adminClientAddrFlag() cli.Flag {
	return &cli.StringFlag{Name: flagAdmin, Category: config.CategoryAdmin, Value: config.DefaultAdminListen, Sources: cli.EnvVars(envAdminAddr),
		Usage: "the server's admin listener, `ADDR` (HOST:PORT; or $" + envAdminAddr + ")"}
}

func adminTokenFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: flagAdminToken, Category: config.CategoryAdmin, Sources: cli.EnvVars(config.EnvAdminToken), Usage: usage}
}
