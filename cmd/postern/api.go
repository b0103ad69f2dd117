package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/cluster"
	"github.com/postern/postern/config"
	"github.com/postern/postern/iceapi"
)

// postern api: the fleet's credentials API as a process of its own, with
// no relay listeners (package cluster: Node.Watch, Node.NewAPI). It reads
// the registry and the fleet's secrets from [cluster] redis, never
// registers itself (it is not a node: never handed out, never counted),
// and answers POST /v1/ice-servers with the best node for the caller,
// /healthz and /readyz, on [credentials_api] listen.

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

// apiAction reads the configuration and serves the API until ctx ends.
func apiAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() > 0 {
		return fmt.Errorf("api takes no arguments, got %q", cmd.Args().First())
	}
	c, err := Load(cmd.String(flagConfig))
	if err != nil {
		return err
	}
	if l := cmd.String(flagAPIListen); l != "" {
		c.CredentialsAPI.Listen = l
	}
	s, err := c.settings()
	if err != nil {
		return err
	}
	log := newLogger(cmd.Root().ErrWriter, config.LogLevel(s.declared), config.LogFormat(s.declared))
	return serveFleetAPI(ctx, s, log)
}

// serveFleetAPI serves the fleet's credentials API of s until ctx ends.
func serveFleetAPI(ctx context.Context, s settings, log *slog.Logger) error {
	cfg, err := clusterConfig(s, log)
	if err != nil {
		return err
	}
	if cfg == nil {
		return fmt.Errorf("cluster.redis is empty: postern api hands out the nodes of a fleet: set [cluster] redis to the fleet's Redis (redis://HOST:PORT)")
	}
	if s.api.listen == "" {
		return fmt.Errorf("credentials_api.listen is empty: give the API an address (--%s, or [credentials_api] listen) and api_keys", flagAPIListen)
	}
	if !s.api.plain && s.tlsCert == "" {
		return fmt.Errorf("credentials_api.listen %q is HTTPS: postern api needs tls.cert and tls.key (it obtains no ACME certificate), "+
			"or serve http://127.0.0.1:PORT behind your TLS reverse proxy", s.api.listen)
	}
	cfg.Node = "api:" + cfg.Node // in logs only: the API process never registers
	n, err := cluster.New(*cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	h, err := n.NewAPI(iceapi.Config{
		Keys:         s.api.keys,
		DefaultUser:  s.ice.user,
		DefaultTTL:   s.ice.ttl,
		MaxTTL:       s.api.maxTTL,
		AllowOrigins: s.api.origins,
		Logger:       log,
	}, s.secrets)
	if err != nil {
		return err
	}
	srv, err := listenAPI(s.api, log)
	if err != nil {
		return err
	}
	if !s.api.plain {
		cert, err := loadCertificate(s)
		if err != nil {
			srv.Close()
			return err
		}
		srv.UseCertificates(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil })
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { n.Watch(ctx) })
	log.Info("postern api: the fleet's credentials API", "redis_node", cfg.Node, "secrets_in_file", len(s.secrets))
	<-srv.Serve(ctx, h)
	if ctx.Err() == nil {
		return errors.New("the credentials API stopped (the log says why)")
	}
	return nil
}
