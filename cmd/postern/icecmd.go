package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/relay"
)

// iceServers is the JSON a WebRTC application passes to RTCPeerConnection:
// {"iceServers":[{"urls":[...],"username":"...","credential":"..."}]}
// (W3C WebRTC 1.0, RTCConfiguration and RTCIceServer). The credentials API
// serves the same type.
type iceServers = iceapi.Configuration

// iceServer is one RTCIceServer. Browsers ignore the credentials for stun:
// URLs, so one entry carries every URL of the server.
type iceServer = iceapi.ICEServer

// restCredentialTTL is how long the credential printed at start stays valid.
const restCredentialTTL = 24 * time.Hour

// restCredentialUser is the USER part of the printed EXPIRY:USER username.
const restCredentialUser = "postern"

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

	var specs []relay.ListenSpec
	switch {
	case cmd.IsSet(flagPorts):
		if specs, err = parsePortSpecs(cmd.StringSlice(flagPorts)); err != nil {
			return err
		}
	case len(m.config.Listen) > 0:
		for _, v := range m.config.Listen {
			spec, err := relay.ParseListenSpec(v)
			if err != nil {
				return fmt.Errorf("config %s: listen: %w", cmd.String(flagConfig), err)
			}
			specs = append(specs, spec)
		}
	default:
		specs = relay.DefaultListeners()
	}

	name := ""
	if cmd.IsSet(flagHost) {
		if name, err = parseICEHost(cmd.String(flagHost)); err != nil {
			return fmt.Errorf("--%s: %w", flagHost, err)
		}
	} else if haveConfig {
		ice, _ := parseICESettings(m.config.ICEServers) // validated by loadMinting
		name = ice.host
		if name == "" && m.config.TLS.ACME && len(m.config.TLS.Domains) > 0 {
			name, _ = hostName(m.config.TLS.Domains[0]) // turns: must name the ACME certificate's domain
		}
	} else {
		return fmt.Errorf("give --%s NAME, the DNS name or address clients dial, or --%s FILE to derive it from the server's configuration", flagHost, flagConfig)
	}

	var policy iceapi.HostPolicy
	if name == "" {
		// From the configuration, as the running server advertises it.
		if policy.External, err = m.config.Relay.ExternalIP.advertisedHost(); err != nil {
			return fmt.Errorf("config %s: %w", cmd.String(flagConfig), err)
		}
		if policy.Relay, policy.Relay6, err = parseRelayIPs(m.config.Relay.IP); err != nil {
			return fmt.Errorf("config %s: %w", cmd.String(flagConfig), err)
		}
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
		return withExternalIPHint(err)
	}
	b, err := mintICEServers(urls, m.secret, m.user, m.ttl, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(cmd.Root().Writer, "%s\n", b)
	return err
}

// mintICEServers returns the iceServers JSON for urls with a TURN REST API
// credential for user, minted from secret and valid for ttl from now.
func mintICEServers(urls []string, secret, user string, ttl time.Duration, now time.Time) ([]byte, error) {
	b, err := json.Marshal(mintConfiguration(urls, secret, user, ttl, now))
	if err != nil {
		return nil, fmt.Errorf("iceServers JSON: %w", err)
	}
	return b, nil
}

// mintConfiguration is the RTCConfiguration for urls with a fresh REST
// credential for user, valid for ttl from now.
func mintConfiguration(urls []string, secret, user string, ttl time.Duration, now time.Time) iceServers {
	return iceapi.RESTConfiguration(urls, secret, user, ttl, now)
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

// advertisedURLs returns the URLs of the bound listeners as clients dial
// them: with ice_servers.host when set (else the ACME certificate's domain),
// else with the address iceapi.HostPolicy picks (the start-up printout and
// the credentials API use this).
func advertisedURLs(bound []relay.BoundListener, s settings) ([]string, error) {
	host := s.ice.host
	if host == "" && s.port443.acme {
		// turns: URLs must name what the ACME certificate is for.
		host = s.port443.domains[0]
	}
	urls, err := iceapi.BoundURLs(bound, host, iceapi.HostPolicy{External: s.externalIP, Relay: s.relayIP, Relay6: s.relayIP6,
		Primary: relay.PrimaryIP, Primary6: relay.PrimaryIP6})
	if err != nil {
		return nil, withExternalIPHint(err)
	}
	return urls, nil
}

// withExternalIPHint adds to an iceapi.NoAddressError the flag that fixes
// it.
func withExternalIPHint(err error) error {
	var noAddr *iceapi.NoAddressError
	switch {
	case !errors.As(err, &noAddr):
		return err
	case noAddr.Err == nil:
		return fmt.Errorf("%w: set --%s", err, flagExternalIP)
	}
	return fmt.Errorf("%w (set --%s)", err, flagExternalIP)
}
