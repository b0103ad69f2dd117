package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/probe"
)

// Flags of the probe command.
const (
	flagProbeUser       = "user"
	flagProbePassword   = "password"
	flagProbeSecret     = "secret"
	flagProbeProxy      = "proxy"
	flagProbeJSON       = "json"
	flagProbeTimeout    = "timeout"
	flagProbeServerName = "server-name"
	flagProbeTURNPort   = "turn-port"
	flagProbeTURNSPort  = "turns-port"
	flagProbeAltPort    = "alt-port"
)

// defaultProbeTimeout is how long each door is given by default.
const defaultProbeTimeout = 5 * time.Second

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:      "probe",
		Usage:     "test from here which transports and ports of a TURN server work",
		ArgsUsage: "HOST",
		Description: "Tries STUN and TURN on UDP 3478, TCP 3478, TLS 5349, UDP 443, TCP 443 and TLS 443 at once\n" +
			"(TCP and TLS through an HTTP CONNECT proxy with --proxy). With credentials, each allocates a relay\n" +
			"and sends a packet through it to itself. Prints a table and the iceServers that work from this\n" +
			"network. Exits 0 only if at least one relay path works.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagProbeUser, Usage: "long-term credential user `NAME`"},
			&cli.StringFlag{Name: flagProbePassword, Usage: "`PASSWORD` of --user"},
			&cli.StringFlag{Name: flagProbeSecret, Usage: "TURN REST API shared `SECRET`: mint a credential from it"},
			&cli.StringFlag{Name: flagProbeProxy, Usage: "reach TCP and TLS through the HTTP proxy at `URL` (http://[USER:PASS@]HOST:PORT, CONNECT)"},
			&cli.BoolFlag{Name: flagProbeJSON, Usage: "print the results as JSON"},
			&cli.DurationFlag{Name: flagProbeTimeout, Value: defaultProbeTimeout, Usage: "give each transport at most `D`"},
			&cli.StringFlag{Name: flagProbeServerName, Usage: "TLS server `NAME` (SNI) to ask for and verify", DefaultText: "HOST when it is a name"},
			&cli.IntFlag{Name: flagProbeTURNPort, Value: probe.DefaultTURNPort, Usage: "`PORT` of turn: over UDP and TCP"},
			&cli.IntFlag{Name: flagProbeTURNSPort, Value: probe.DefaultTURNSPort, Usage: "`PORT` of turns: (TLS)"},
			&cli.IntFlag{Name: flagProbeAltPort, Value: probe.DefaultAltPort, Usage: "the firewall-friendly `PORT` tried with UDP, TCP and TLS"},
		},
		OnUsageError: usageError,
		Action:       probeAction,
	}
}

func probeAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() != 1 {
		return fmt.Errorf("probe takes one argument, the server's HOST (name or address), got %d", cmd.NArg())
	}
	cfg, err := probeConfig(cmd)
	if err != nil {
		return err
	}
	doors := probe.Doors(int(cmd.Int(flagProbeTURNPort)), int(cmd.Int(flagProbeTURNSPort)), int(cmd.Int(flagProbeAltPort)))
	for _, d := range doors {
		if err := d.Check(); err != nil {
			return err
		}
	}
	p, err := probe.New(cfg)
	if err != nil {
		return err
	}
	rep := p.Run(ctx, doors)
	out := cmd.Root().Writer
	if cmd.Bool(flagProbeJSON) {
		err = rep.WriteJSON(out)
	} else {
		err = rep.WriteTable(out)
	}
	if err != nil {
		return err
	}
	// Exit status 1 when no door relayed (probe.ErrNoRelayPath).
	if err := rep.Err(); err != nil && cfg.User == "" && cfg.Secret == "" {
		return fmt.Errorf("%w: no credentials were given, so only reachability was tested (add --%s and --%s, or --%s)",
			err, flagProbeUser, flagProbePassword, flagProbeSecret)
	}
	return rep.Err()
}

// probeConfig turns the flags and the HOST argument into a probe.Config,
// with errors that name the flags.
func probeConfig(cmd *cli.Command) (probe.Config, error) {
	host := strings.TrimSuffix(strings.TrimPrefix(cmd.Args().First(), "["), "]")
	if host == "" || strings.ContainsAny(host, "/ ") {
		return probe.Config{}, fmt.Errorf("HOST %q: write a DNS name or an IP address, without scheme or port", cmd.Args().First())
	}
	if _, _, err := net.SplitHostPort(host); err == nil && net.ParseIP(host) == nil {
		return probe.Config{}, fmt.Errorf("HOST %q: write the host without a port; ports are --%s, --%s and --%s", host, flagProbeTURNPort, flagProbeTURNSPort, flagProbeAltPort)
	}
	cfg := probe.Config{Host: host, Timeout: cmd.Duration(flagProbeTimeout), ServerName: cmd.String(flagProbeServerName),
		Software: "postern-probe/" + version()}
	if cfg.Timeout <= 0 {
		return probe.Config{}, fmt.Errorf("--%s %v: write a positive duration such as 5s", flagProbeTimeout, cfg.Timeout)
	}
	cfg.User, cfg.Password, cfg.Secret = cmd.String(flagProbeUser), cmd.String(flagProbePassword), cmd.String(flagProbeSecret)
	switch {
	case cfg.Secret != "" && (cfg.User != "" || cfg.Password != ""):
		return probe.Config{}, fmt.Errorf("give either --%s and --%s, or --%s", flagProbeUser, flagProbePassword, flagProbeSecret)
	case cfg.Secret == "" && (cfg.User == "") != (cfg.Password == ""):
		return probe.Config{}, fmt.Errorf("--%s and --%s go together", flagProbeUser, flagProbePassword)
	}
	if v := cmd.String(flagProbeProxy); v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return probe.Config{}, fmt.Errorf("--%s %q: write http://HOST:PORT (an HTTP proxy that allows CONNECT)", flagProbeProxy, v)
		}
		cfg.Proxy = u
	}
	return cfg, nil
}
