package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/config"
	"github.com/postern/postern/node"
)

// postern api: the fleet's credentials API without relay listeners
// (node.ServeFleetAPI).

const flagAPIListen = "listen"

// apiCommand returns the "api" subcommand.
func apiCommand() *cli.Command {
	return &cli.Command{
		Name:  "api",
		Usage: "serve the fleet's credentials API (POST /v1/ice-servers) without relaying: it hands out the best node of the registry",
		Description: "Reads [cluster] (redis, region_rules, heartbeat, timeout), [credentials_api] (listen, api_keys, max_ttl,\n" +
			"allow_origins), [ice_servers] (user, ttl), [auth] secrets and [tls] cert/key (for HTTPS) from --config: the\n" +
			"nodes' file will do. The fleet's secrets in Redis (postern:secrets) mint first, re-read every heartbeat.\n" +
			"GET /healthz is liveness, GET /readyz is 503 while no node can be handed out.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagConfig, Aliases: []string{"c"}, TakesFile: true, Required: true, Usage: "the TOML `FILE` of the fleet"},
			&cli.StringFlag{Name: flagAPIListen, Usage: "listen on `ADDR` instead of credentials_api.listen (HOST:PORT or https://HOST:PORT, or http://127.0.0.1:PORT)"},
		},
		OnUsageError: usageError,
		Action:       apiAction,
	}
}

// apiAction reads the configuration and serves the API until ctx ends
// (node.ServeFleetAPI).
func apiAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() > 0 {
		return fmt.Errorf("api takes no arguments, got %q", cmd.Args().First())
	}
	v, err := config.Load(cmd.String(flagConfig))
	if err != nil {
		return err
	}
	if l := cmd.String(flagAPIListen); l != "" {
		v["credentials_api.listen"] = l
	}
	if v, err = config.Resolve(config.Settings(), v); err != nil {
		return err
	}
	log := newLogger(cmd.Root().ErrWriter, config.LogLevel(v), config.LogFormat(v))
	return node.ServeFleetAPI(ctx, v, flagAPIListen, log)
}
