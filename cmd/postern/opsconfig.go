package main

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/relay"
)

// AdminConfig is the [admin] table: the admin HTTP listener with metrics,
// health and the sessions API (package admin).
type AdminConfig struct {
	// Listen is the listener's HOST:PORT; "off" disables it. Empty: the
	// default, 127.0.0.1:9641.
	Listen string `toml:"listen"`
	// Token, when set, is required as "Authorization: Bearer TOKEN" on
	// /metrics and /api/ (not on /healthz and /readyz).
	Token string `toml:"token"`
}

// ExternalIPSetting is relay.external_ip as written. TOML accepts one
// string (an address, or "auto"), an array of strings ("PUBLIC" or
// "RELAY=PUBLIC", and "auto"), or a table mapping relay addresses to public
// ones: { "10.0.0.5" = "203.0.113.7" }. A table is read as the list of its
// "RELAY=PUBLIC" pairs, the form --external-ip takes.
type ExternalIPSetting []string

// UnmarshalTOML implements toml.Unmarshaler.
func (e *ExternalIPSetting) UnmarshalTOML(v any) error {
	const how = `write one address ("203.0.113.7"), "auto", a list (["203.0.113.7", "2001:db8::7"]), or a table of relay address = public address ({ "10.0.0.5" = "203.0.113.7" })`
	switch v := v.(type) {
	case string:
		*e = nil
		if v != "" {
			*e = ExternalIPSetting{v}
		}
	case []any:
		out := make(ExternalIPSetting, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("external_ip: %v is not a string: %s", x, how)
			}
			out = append(out, s)
		}
		*e = out
	case map[string]any:
		out := make(ExternalIPSetting, 0, len(v))
		for _, relayIP := range slices.Sorted(maps.Keys(v)) {
			public, ok := v[relayIP].(string)
			if !ok {
				return fmt.Errorf("external_ip: the value for %q is not a string: %s", relayIP, how)
			}
			out = append(out, relayIP+"="+public)
		}
		*e = out
	default:
		return fmt.Errorf("external_ip: %s", how)
	}
	return nil
}

// advertisedHost returns the one address the configuration advertises for
// relay addresses in general, for writing ICE server URLs: the IPv4
// PUBLIC, else the IPv6 one, else the only mapped public address; the zero
// Addr when there is none (or "auto", known only once the server runs).
func (e ExternalIPSetting) advertisedHost() (netip.Addr, error) {
	m, _, err := parseExternalIPSetting(e)
	if err != nil {
		return netip.Addr{}, err
	}
	return hostOf(m), nil
}

// hostOf picks the address of m to write in ICE server URLs.
func hostOf(m relay.ExternalIPs) netip.Addr {
	switch {
	case m.V4.IsValid():
		return m.V4
	case m.V6.IsValid():
		return m.V6
	case len(m.ByRelay) == 1:
		for _, public := range m.ByRelay {
			return public
		}
	}
	return netip.Addr{}
}

// parseExternalIPSetting validates relay.external_ip: the static mapping,
// and whether "auto" discovery was asked for.
func parseExternalIPSetting(e ExternalIPSetting) (relay.ExternalIPs, bool, error) {
	auto := false
	var static []string
	for _, v := range e {
		if strings.EqualFold(strings.TrimSpace(v), "auto") {
			auto = true
			continue
		}
		static = append(static, v)
	}
	m, err := relay.ParseExternalIPs(static)
	if err != nil {
		return relay.ExternalIPs{}, false, fmt.Errorf("relay.external_ip (--%s): %w", flagExternalIP, err)
	}
	return m, auto, nil
}

// Defaults of the operations settings.
const defaultAdminListen = admin.DefaultAddr

// defaultSTUNServers are asked for this host's public address when
// relay.external_ip = "auto" and relay.stun_servers is not set.
func defaultSTUNServers() []string {
	return []string{"stun.l.google.com:19302", "stun.cloudflare.com:3478"}
}

// Flags of the operations settings, and the admin flags' --help category.
const (
	flagSTUNServer = "stun-server"
	flagAdmin      = "admin"
	flagAdminToken = "admin-token"
	catAdmin       = "Admin"
	// envAdminToken may hold the admin token instead of --admin-token, which
	// other local users could read in ps.
	envAdminToken = "POSTERN_ADMIN_TOKEN"
)

// adminAddrFlag and adminTokenFlag are --admin and --admin-token, shared by
// serve (the listener) and sessions and kick (its clients), with the given
// usage.
func adminAddrFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: flagAdmin, Category: catAdmin, Value: defaultAdminListen, Usage: usage}
}

// envAdminAddr may hold the admin address for the admin clients (sessions,
// kick, drain): a Kubernetes preStop hook runs "postern drain" without a
// shell to expand the node's address into a flag, but with the
// container's environment, where "$(HOST_IP):9641" is expanded.
const envAdminAddr = "POSTERN_ADMIN"

// adminClientAddrFlag is --admin of the admin clients, also read from
// $POSTERN_ADMIN (serve's --admin is not).
func adminClientAddrFlag() cli.Flag {
	return &cli.StringFlag{Name: flagAdmin, Category: catAdmin, Value: defaultAdminListen, Sources: cli.EnvVars(envAdminAddr),
		Usage: "the server's admin listener, `ADDR` (HOST:PORT; or $" + envAdminAddr + ")"}
}

func adminTokenFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: flagAdminToken, Category: catAdmin, Sources: cli.EnvVars(envAdminToken), Usage: usage}
}

// applyOperationsFlags overrides the external address, STUN server and
// admin settings of c with the flags given.
func (c *Config) applyOperationsFlags(cmd *cli.Command) {
	if cmd.IsSet(flagExternalIP) {
		c.Relay.ExternalIP = ExternalIPSetting(cmd.StringSlice(flagExternalIP))
	}
	override(cmd, flagSTUNServer, &c.Relay.STUNServers, cmd.StringSlice)
	if cmd.IsSet(flagAdmin) {
		c.Admin.Listen = cmd.String(flagAdmin)
		if c.Admin.Listen == "" {
			c.Admin.Listen = "off"
		}
	}
	override(cmd, flagAdminToken, &c.Admin.Token, cmd.String)
}

// adminSettings is the validated [admin] table.
type adminSettings struct {
	listen   string // HOST:PORT to bind; "" when off
	explicit bool   // the operator named another address: failing to bind is fatal
	token    string
}

// loadOperations validates relay.external_ip, relay.stun_servers and the
// [admin] table.
func (s *settings) loadOperations(c Config) error {
	var err error
	if s.externalIPs, s.externalAuto, err = parseExternalIPSetting(c.Relay.ExternalIP); err != nil {
		return err
	}
	s.externalIP = hostOf(s.externalIPs)

	s.stunServers = defaultSTUNServers()
	if len(c.Relay.STUNServers) > 0 {
		s.stunServers = append([]string(nil), c.Relay.STUNServers...)
	}
	for _, srv := range s.stunServers {
		if _, port, err := net.SplitHostPort(srv); err != nil || port == "" {
			return fmt.Errorf("relay.stun_servers (--%s) %q: write HOST:PORT, e.g. stun.example.org:3478", flagSTUNServer, srv)
		}
	}

	switch l := strings.TrimSpace(c.Admin.Listen); {
	case strings.EqualFold(l, "off"):
		if c.Admin.Token != "" {
			return fmt.Errorf("admin.token (--%s) is set but the admin listener is off (admin.listen = \"off\"): remove one", flagAdminToken)
		}
	case l == "":
		s.admin.listen = defaultAdminListen
	default:
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			return fmt.Errorf("admin.listen (--%s) %q: write HOST:PORT, e.g. %s, or \"off\": %w", flagAdmin, l, defaultAdminListen, err)
		}
		if host != "" && host != "localhost" {
			if _, err := netip.ParseAddr(host); err != nil {
				return fmt.Errorf("admin.listen (--%s) %q: host %q is not an IP address", flagAdmin, l, host)
			}
		}
		// Writing the default address counts as the default: only another
		// address makes a failure to bind fatal.
		s.admin.listen, s.admin.explicit = l, l != defaultAdminListen
	}
	if s.admin.listen != "" {
		s.admin.token = c.Admin.Token
	}
	return nil
}

// stunDiscovery is relay.Config.DiscoverExternalIP: the STUN servers when
// relay.external_ip includes "auto", else nil.
func (s settings) stunDiscovery() []string {
	if !s.externalAuto {
		return nil
	}
	return s.stunServers
}
