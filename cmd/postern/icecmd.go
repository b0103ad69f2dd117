package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/config"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/node"
	"github.com/postern/postern/relay"
)

// iceServer is one RTCIceServer of the iceServers JSON (iceapi.Configuration).
type iceServer = iceapi.ICEServer

// iceServersCommand returns "ice-servers": print the iceServers JSON that
// RTCPeerConnection takes, with a fresh credential.
func iceServersCommand() *cli.Command {
	return &cli.Command{
		Name:  "ice-servers",
		Usage: "print the iceServers JSON for new RTCPeerConnection(...), with a fresh credential",
		UsageText: "postern ice-servers --host turn.example.org [--secret-file FILE | --secret S] [--user NAME] [--ttl 24h] [--ports udp:3478,tcp:3478,...]\n" +
			"postern ice-servers --config FILE [--host NAME] [...]",
		Description: "Prints one line, {\"iceServers\":[{\"urls\":[...],\"username\":...,\"credential\":...}]}, with the URLs of\n" +
			"every listener ordered UDP first, then TCP, then TLS (see README, \"Credentials for WebRTC apps\").\n" +
			"With --config the listeners and the host come from the file (listen, ice_servers.host,\n" +
			"relay.external_ip, relay.ip, else this machine's default-route address); --host and --ports win.\n" +
			"The secret is found as for `postern credential`.",
		Flags: append(mintFlags(),
			&cli.StringFlag{Name: flagHost,
				Usage:       "the DNS name or address `HOST` clients dial (use the certificate's name for turns:)",
				DefaultText: "from --config"},
			&cli.StringSliceFlag{Name: flagPorts,
				Usage:       "the listeners to list, `SPEC`s such as udp:3478, tcp+tls:443 or udp://:3478 (repeatable or comma-separated)",
				DefaultText: "the listen list of --config, else udp:3478, tcp:3478, tls:5349, udp:443, tcp+tls:443"},
		),
		OnUsageError: usageError,
		Action:       iceServersAction,
	}
}

func iceServersAction(_ context.Context, cmd *cli.Command) error {
	if cmd.NArg() > 0 {
		return fmt.Errorf("ice-servers takes no arguments, got %q (did you mean --host %s?)", cmd.Args().First(), cmd.Args().First())
	}
	m, err := loadMinting(cmd)
	if err != nil {
		return err
	}
	haveConfig := cmd.String(flagConfig) != ""
	file, err := config.Resolve(config.Subset("relay.ip", "relay.external_ip"), m.config)
	if err != nil {
		return fmt.Errorf("config %s: %w", cmd.String(flagConfig), err)
	}

	var specs []relay.ListenSpec
	switch {
	case cmd.IsSet(flagPorts):
		if specs, err = parsePortSpecs(cmd.StringSlice(flagPorts)); err != nil {
			return err
		}
	default:
		// From the file (validated for the keys read here only), else the
		// default listeners.
		if file, err = config.Resolve(config.Subset("listen", "relay.ip", "relay.external_ip"), m.config); err != nil {
			return fmt.Errorf("config %s: %w", cmd.String(flagConfig), err)
		}
		specs, _ = config.Listeners(file)
	}

	name := ""
	if cmd.IsSet(flagHost) {
		if name, err = config.ICEHost(cmd.String(flagHost)); err != nil {
			return fmt.Errorf("--%s: %w", flagHost, err)
		}
	} else if haveConfig {
		ice, _ := iceOf(m.config) // validated by loadMinting
		name = ice.Host
		acme, _ := m.config["tls.acme"].(bool)
		if domains, _ := m.config["tls.domains"].([]string); name == "" && acme && len(domains) > 0 {
			name, _ = config.HostName(domains[0]) // turns: must name the ACME certificate's domain
		}
	} else {
		return fmt.Errorf("give --%s NAME, the DNS name or address clients dial, or --%s FILE to derive it from the server's configuration", flagHost, flagConfig)
	}

	var policy iceapi.HostPolicy
	if name == "" {
		// From the configuration, as the running server advertises it.
		policy.External = config.AdvertisedHost(file)
		policy.Relay, policy.Relay6 = config.RelayIPs(file)
		told := false
		policy.Primary = func() (netip.Addr, error) {
			ip, err := relay.PrimaryIP()
			if err == nil && !told {
				told = true
				fmt.Fprintf(cmd.Root().ErrWriter, "postern: no ice_servers.host or --%s: using %s, this machine's default-route address\n", flagHost, ip)
			}
			return ip, err
		}
	}
	urls, err := iceapi.SpecURLs(specs, name, policy)
	if err != nil {
		return node.WithExternalIPHint(err)
	}
	b, err := iceapi.MintJSON(urls, m.secret, m.user, m.ttl, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(cmd.Root().Writer, "%s\n", b)
	return err
}

// parsePortSpecs parses --ports values: SCHEME:PORT (udp:3478) or a listen
// spec (udp://HOST:PORT, whose host is then ignored for the URLs unless no
// host is given).
func parsePortSpecs(values []string) ([]relay.ListenSpec, error) {
	var specs []relay.ListenSpec
	for _, v := range values {
		v = strings.TrimSpace(v)
		in := v
		if !strings.Contains(v, "://") {
			scheme, port, ok := strings.Cut(v, ":")
			if !ok {
				return nil, fmt.Errorf("--%s %q: write SCHEME:PORT such as udp:3478 or tcp+tls:443", flagPorts, v)
			}
			in = scheme + "://:" + port
		}
		spec, err := relay.ParseListenSpec(in)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: %w", flagPorts, v, err)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}
