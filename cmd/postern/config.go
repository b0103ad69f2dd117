package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v3"

	"github.com/postern/postern/config"
)

// Config is the schema of the TOML configuration file; config.toml.example
// documents every key. The zero value of a field means "use the default", so
// an empty file and no file at all configure the same server. Config holds the
// text as written; settings() validates it.
type Config struct {
	// Listen lists the listeners as SCHEME://HOST:PORT (relay.ParseListenSpec).
	Listen []string     `toml:"listen"`
	Log    LogConfig    `toml:"log"` // declared in package config
	Auth   AuthConfig   `toml:"auth"`
	Relay  RelayConfig  `toml:"relay"`
	Limits LimitsConfig `toml:"limits"`
	Drain  DrainConfig  `toml:"drain"`
	TLS    TLSConfig    `toml:"tls"`

	// What the handed-out iceServers JSON holds, and the HTTPS endpoint
	// that mints it (credconfig.go).
	ICEServers     ICEServersConfig     `toml:"ice_servers"`
	CredentialsAPI CredentialsAPIConfig `toml:"credentials_api"`

	// Web shares the TLS listeners with a web site, and ProxyProtocolFrom
	// lists the CIDRs (load balancers) allowed to send PROXY protocol
	// headers on TCP and TLS listeners (port443.go).
	Web               WebConfig `toml:"web"`
	ProxyProtocolFrom []string  `toml:"proxy_protocol_from"`

	// Admin is the admin HTTP listener: metrics, health, sessions
	// (opsconfig.go).
	Admin AdminConfig `toml:"admin"`

	// Selftest is the [selftest] table, declared in package config
	// (cmd/postern/selftest.go).
	Selftest SelftestConfig `toml:"selftest"`

	// Cluster is the [cluster] table (cluster.go).
	Cluster ClusterConfig `toml:"cluster"`

	// Usage is the [usage] table, declared in package config (usage.go).
	Usage UsageConfig `toml:"usage"`

	// Declared holds the settings declared in package config (config.Settings),
	// read from the file by Load and overridden by flags; nil or a missing
	// key: the default.
	Declared config.Values `toml:"-"`
}

// LogConfig is the [log] table, whose keys (level, format) are declared
// in package config; the empty table keeps "unknown key" errors listing
// them.
type LogConfig struct{}

// AuthConfig is the [auth] table: who may allocate.
type AuthConfig struct {
	// Users maps user names to passwords (long-term credentials).
	Users map[string]string `toml:"users"`
	// UsersFile names a file of "user:password" or "user:0x<md5 key>" lines.
	UsersFile string `toml:"users_file"`
	// Secrets are TURN REST API shared secrets; the first one mints
	// credentials, every one verifies them (so secrets can be rotated).
	Secrets []string `toml:"secrets"`
	// nonce_lifetime is declared in package config.
}

// RelayConfig is the [relay] table: the relayed addresses and which peers
// they may reach.
type RelayConfig struct {
	// IP is the address relay sockets bind on: one address, or one of
	// each family ("203.0.113.7", ["203.0.113.7", "2001:db8::7"], or
	// "203.0.113.7,2001:db8::7").
	IP RelayIPSetting `toml:"ip"`
	// DefaultFamily is the family of the relayed address an Allocate
	// without REQUESTED-ADDRESS-FAMILY gets: "ipv4" (the default, as RFC
	// 8656 §7.2 asks), "ipv6", or "keep" (the client's own family).
	DefaultFamily string `toml:"default_family"`
	// ExternalIP is advertised in XOR-RELAYED-ADDRESS behind 1:1 NAT: one
	// address, "auto", or relay address = public address pairs
	// (opsconfig.go).
	ExternalIP ExternalIPSetting `toml:"external_ip"`
	// STUNServers are asked for the public address when ExternalIP is
	// "auto".
	STUNServers []string `toml:"stun_servers"`
	// AllowPeers are addresses or CIDRs peers may have even when the default
	// policy denies them.
	AllowPeers []string `toml:"allow_peers"`
	// DenyPeers are addresses or CIDRs denied on top of the default policy.
	DenyPeers []string `toml:"deny_peers"`
}

// LimitsConfig is the [limits] table, whose keys are all declared in
// package config; the empty table keeps "unknown key" errors listing them.
type LimitsConfig struct{}

// TLSConfig is the [tls] table: the certificate of tls:// and tcp+tls://
// listeners.
type TLSConfig struct {
	// Cert is a PEM certificate chain file.
	Cert string `toml:"cert"`
	// Key is the PEM private key file of Cert.
	Key string `toml:"key"`

	// ACME obtains and renews the certificate for Domains automatically
	// (port443.go); ACMECA is the CA's directory URL, ACMEEmail the
	// account's contact, ACMEStorage the state directory, and ACMECARoot
	// a PEM file of roots trusted for the CA's API.
	ACME        bool     `toml:"acme"`
	Domains     []string `toml:"domains"`
	ACMECA      string   `toml:"acme_ca"`
	ACMEEmail   string   `toml:"acme_email"`
	ACMEStorage string   `toml:"acme_storage"`
	ACMECARoot  string   `toml:"acme_ca_root"`
}

// Duration is a time.Duration written in TOML as a string such as "10m"
// (config.Duration).
type Duration = config.Duration

// ErrUnknownKey is returned (wrapped) by Load for keys the schema lacks.
var ErrUnknownKey = errors.New("unknown key")

// Load reads the TOML file at path strictly: a key the schema does not know
// is an error naming it, so a typo never silently leaves a default in force.
func Load(path string) (Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if bad := unknownKeys(md.Undecoded()); len(bad) > 0 {
		return Config{}, fmt.Errorf("config %s: %w %s", path, ErrUnknownKey, strings.Join(bad, "; "))
	}
	if c.Declared, err = decodeDeclared(path); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// decodeDeclared reads the settings declared in package config from the
// TOML file at path (which has decoded once already).
func decodeDeclared(path string) (config.Values, error) {
	var doc map[string]any
	if _, err := toml.DecodeFile(path, &doc); err != nil {
		return nil, err
	}
	return config.FromTOML(config.Settings(), doc)
}

// unknownKeys describes each undecoded key with the keys valid in its table.
// Keys below an unknown table are not listed again.
func unknownKeys(undecoded []toml.Key) []string {
	var out []string
	var reported []toml.Key
	for _, k := range undecoded {
		if config.Declared(config.Settings(), k) {
			continue
		}
		if slices.ContainsFunc(reported, func(p toml.Key) bool { return isPrefix(p, k) }) {
			continue
		}
		reported = append(reported, k)
		table, valid := validKeys(k[:len(k)-1])
		where := "at the top level"
		if table != "" {
			where = "in [" + table + "]"
		}
		msg := k.String()
		if len(valid) > 0 {
			msg += fmt.Sprintf(" (keys %s: %s)", where, strings.Join(valid, ", "))
		}
		out = append(out, msg)
	}
	return out
}

func isPrefix(p, k toml.Key) bool {
	return len(p) <= len(k) && slices.Equal(p, k[:len(p)])
}

// validKeys returns the toml names of the fields of the table at path, or
// nil when path is not a table of the schema.
func validKeys(path toml.Key) (table string, keys []string) {
	t := reflect.TypeFor[Config]()
	for _, name := range path {
		f, ok := fieldByTag(t, name)
		if !ok || f.Type.Kind() != reflect.Struct {
			return path.String(), nil
		}
		t = f.Type
	}
	for f := range t.Fields() {
		if tag := f.Tag.Get("toml"); tag != "-" {
			keys = append(keys, tag)
		}
	}
	keys = append(keys, config.KeysIn(config.Settings(), path.String())...)
	return path.String(), keys
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		if f.Tag.Get("toml") == tag {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// Command-line flag names of the serve command (and of later commands that
// read the same configuration).
const (
	flagConfig     = "config"
	flagListen     = "listen"
	flagRealm      = "realm" // declared in package config; credential hash has its own
	flagUser       = "user"
	flagUsersFile  = "users-file"
	flagSecret     = "secret"
	flagRelayIP    = "relay-ip"
	flagExternalIP = "external-ip"
	flagAllowPeer  = "allow-peer"
	flagDenyPeer   = "deny-peer"
	flagTLSCert    = "tls-cert"
	flagTLSKey     = "tls-key"
)

// Flag categories in --help.
const (
	catListen = "Listeners"
	catAuth   = "Authentication"
	catRelay  = "Relay"
	catTLS    = "TLS"
	catLog    = "Logging"
)

// configFlags returns fresh flags mirroring every Config key. Repeatable
// flags take one value per use (commas are not separators: passwords and
// secrets may contain them).
func configFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: flagConfig, Aliases: []string{"c"}, TakesFile: true,
			Usage: "read settings from the TOML `FILE` (see config.toml.example); flags override it"},

		&cli.StringSliceFlag{Name: flagListen, Category: catListen,
			Usage:       "listen on `SPEC`: udp://, tcp://, tls:// or tcp+tls:// then HOST:PORT (replaces the file's list)",
			DefaultText: "udp+tcp :3478, tls :5349, udp :443, tcp+tls :443"},
		&cli.StringSliceFlag{Name: flagUser, Category: catAuth,
			Usage: "static user `NAME:PASSWORD` (replaces the file's users)"},
		&cli.StringFlag{Name: flagUsersFile, Category: catAuth, TakesFile: true,
			Usage: "read users from `FILE`: lines user:password or user:0x<md5 key hex>, # comments"},
		&cli.StringSliceFlag{Name: flagSecret, Category: catAuth,
			Usage: "TURN REST API shared secret `S`; the first mints, all verify (replaces the file's secrets)"},

		&cli.StringSliceFlag{Name: flagRelayIP, Category: catRelay,
			Usage:       "bind relay sockets on `IP`: one address of each family (repeatable, or IPV4,IPV6)",
			DefaultText: "the listener's address if specific, else the host's primary address of each family"},
		&cli.StringSliceFlag{Name: flagExternalIP, Category: catRelay,
			Usage: "advertise `PUBLIC` in XOR-RELAYED-ADDRESS behind 1:1 NAT, or RELAY=PUBLIC for one relay address, or auto to ask STUN servers (repeatable)"},
		&cli.StringSliceFlag{Name: flagSTUNServer, Category: catRelay,
			Usage:       "with --external-ip auto, ask the STUN server `HOST:PORT` (repeatable; replaces the file's list)",
			DefaultText: strings.Join(defaultSTUNServers(), ", ")},
		&cli.StringSliceFlag{Name: flagAllowPeer, Category: catRelay,
			Usage: "let peers in `CIDR` through even if the default policy denies them, e.g. 127.0.0.0/8 for tests"},
		&cli.StringSliceFlag{Name: flagDenyPeer, Category: catRelay,
			Usage: "deny peers in `CIDR` on top of the default policy"},

		&cli.StringFlag{Name: flagTLSCert, Category: catTLS, TakesFile: true,
			Usage:       "PEM certificate chain `FILE` for tls:// and tcp+tls:// listeners",
			DefaultText: "a self-signed certificate made at start"},
		&cli.StringFlag{Name: flagTLSKey, Category: catTLS, TakesFile: true,
			Usage: "PEM private key `FILE` of --tls-cert"},

		&cli.StringFlag{Name: flagCredentialsAPI, Category: catAPI,
			Usage:       "serve POST /v1/ice-servers on `ADDR`: HOST:PORT or https://HOST:PORT (HTTPS, needs --tls-cert), or http://127.0.0.1:PORT (loopback only)",
			DefaultText: "off"},
		&cli.StringSliceFlag{Name: flagAPIKey, Category: catAPI,
			Usage: "accept `KEY` as Authorization: Bearer KEY on the credentials API (replaces the file's keys)"},

		adminAddrFlag("admin HTTP listener (metrics, health, sessions API) at `ADDR` (HOST:PORT); \"\" or off disables it"),
		adminTokenFlag("require the bearer `TOKEN` on /metrics, /api/ and the dashboard of the admin listener"),
		pprofFlag(),
	}, append(port443Flags(), config.Flags(config.Settings())...)...)
}

// applyFlags overrides c with the flags given on the command line. A
// repeatable flag replaces the file's whole list, so the command line alone
// says what is in force.
func (c *Config) applyFlags(cmd *cli.Command) error {
	override(cmd, flagListen, &c.Listen, cmd.StringSlice)
	if cmd.IsSet(flagUser) {
		users, err := parseUserFlags(cmd.StringSlice(flagUser))
		if err != nil {
			return err
		}
		c.Auth.Users = users
	}
	override(cmd, flagUsersFile, &c.Auth.UsersFile, cmd.String)
	override(cmd, flagSecret, &c.Auth.Secrets, cmd.StringSlice)

	override(cmd, flagRelayIP, &c.Relay.IP, func(name string) RelayIPSetting { return cmd.StringSlice(name) })
	c.applyOperationsFlags(cmd) // --external-ip, --stun-server, --admin, --admin-token
	override(cmd, flagAllowPeer, &c.Relay.AllowPeers, cmd.StringSlice)
	override(cmd, flagDenyPeer, &c.Relay.DenyPeers, cmd.StringSlice)

	override(cmd, flagTLSCert, &c.TLS.Cert, cmd.String)
	override(cmd, flagTLSKey, &c.TLS.Key, cmd.String)

	override(cmd, flagCredentialsAPI, &c.CredentialsAPI.Listen, cmd.String)
	override(cmd, flagAPIKey, &c.CredentialsAPI.APIKeys, cmd.StringSlice)

	c.applyPort443Flags(cmd)
	if c.Declared == nil {
		c.Declared = config.Values{}
	}
	config.FromFlags(config.Settings(), cmd, c.Declared)
	return nil
}

// override sets *dst to flag name's value, read with get, when the flag was
// given on the command line: a flag wins over the file.
func override[T any](cmd *cli.Command, name string, dst *T, get func(string) T) {
	if cmd.IsSet(name) {
		*dst = get(name)
	}
}

// parseUserFlags turns --user NAME:PASSWORD values into a map. The password
// may contain colons; the name may not. Errors never echo the value, which
// may hold a password.
func parseUserFlags(values []string) (map[string]string, error) {
	users := make(map[string]string, len(values))
	for i, v := range values {
		name, password, ok := strings.Cut(v, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("--%s (value %d of %d): no colon: write NAME:PASSWORD", flagUser, i+1, len(values))
		case name == "":
			return nil, fmt.Errorf("--%s (value %d of %d): empty user name: write NAME:PASSWORD", flagUser, i+1, len(values))
		case password == "":
			return nil, fmt.Errorf("--%s %s: empty password: write NAME:PASSWORD", flagUser, name)
		}
		if _, dup := users[name]; dup {
			return nil, fmt.Errorf("--%s %s: given twice: keep one", flagUser, name)
		}
		users[name] = password
	}
	return users, nil
}

// RelayIPSetting is relay.ip as written: one string (an address, or
// addresses separated by commas) or an array of them.
type RelayIPSetting []string

// UnmarshalTOML implements toml.Unmarshaler.
func (r *RelayIPSetting) UnmarshalTOML(v any) error {
	const how = `write one address ("203.0.113.7") or one of each family (["203.0.113.7", "2001:db8::7"])`
	switch v := v.(type) {
	case string:
		*r = nil
		if v != "" {
			*r = RelayIPSetting{v}
		}
	case []any:
		out := make(RelayIPSetting, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("relay.ip: %v is not a string: %s", x, how)
			}
			out = append(out, s)
		}
		*r = out
	default:
		return fmt.Errorf("relay.ip: %s", how)
	}
	return nil
}

// parseRelayIPs parses relay.ip (--relay-ip): at most one address of each
// family, in values of one or more addresses separated by commas. first is
// the IPv4 address, or the only one; second the IPv6 address when an IPv4
// one is given too.
func parseRelayIPs(values []string) (first, second netip.Addr, err error) {
	var v4, v6 netip.Addr
	for _, v := range values {
		for _, one := range strings.Split(v, ",") {
			one = strings.TrimSpace(one)
			if one == "" {
				continue
			}
			ip, err := parseHostIP(one, "relay.ip", flagRelayIP)
			if err != nil {
				return netip.Addr{}, netip.Addr{}, err
			}
			slot := &v4
			if ip.Is6() {
				slot = &v6
			}
			if slot.IsValid() && *slot != ip {
				return netip.Addr{}, netip.Addr{}, fmt.Errorf("relay.ip (--%s): %v and %v: give at most one address of each family", flagRelayIP, *slot, ip)
			}
			*slot = ip
		}
	}
	if !v4.IsValid() {
		return v6, netip.Addr{}, nil
	}
	return v4, v6, nil
}
