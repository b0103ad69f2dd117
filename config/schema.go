package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/relay"
)

// The list- and map-valued settings, and the tables read by the command
// rather than by relay.Config ([tls] files and ACME, [ice_servers],
// [credentials_api], [admin]); their typed getters are below each group.

// Categories of --help for the settings of this file.
const (
	CategoryListen = "Listeners"
	CategoryTLS    = "TLS"
	CategoryAPI    = "Credentials API"
	CategoryAdmin  = "Admin"
)

// listenSettings is listen, the first key of the file.
func listenSettings() []Setting {
	return []Setting{{
		Key: "listen", Flag: "listen", Kind: KindStrings, Default: []string(nil),
		DefaultText: "udp+tcp :3478, tls :5349, udp :443, tcp+tls :443", DocDefault: "the five above",
		TOMLDefault: `["udp://:3478", "tcp://:3478", "tls://:5349", "udp://:443", "tcp+tls://:443"]`,
		Placeholder: "SPEC", Category: CategoryListen, Restart: true,
		Usage: "listen on SPEC: udp://, tcp://, tls:// or tcp+tls:// then HOST:PORT (replaces the file's list)",
		Check: func(v any) error {
			_, err := listenSpecs(v.([]string))
			return err
		},
		Set: func(c *relay.Config, v any) {
			c.Listeners, _ = listenSpecs(v.([]string)) // checked
			c.ListenersExplicit = len(c.Listeners) > 0
		},
	}}
}

func listenSpecs(values []string) ([]relay.ListenSpec, error) {
	var out []relay.ListenSpec
	for _, v := range values {
		spec, err := relay.ParseListenSpec(v)
		if err != nil {
			return nil, err
		}
		out = append(out, spec)
	}
	return out, nil
}

// Listeners is the resolved listen of v, relay.DefaultListeners() when
// unset; explicit tells whether the operator named them.
func Listeners(v Values) (specs []relay.ListenSpec, explicit bool) {
	specs, _ = listenSpecs(Get(Settings(), v, "listen").([]string))
	if len(specs) == 0 {
		return relay.DefaultListeners(), false
	}
	return specs, true
}

// proxyFromSettings is proxy_protocol_from, a top-level key.
func proxyFromSettings() []Setting {
	return []Setting{{
		Key: "proxy_protocol_from", Flag: "proxy-protocol-from", Kind: KindStrings, Default: []string(nil),
		DocDefault: "none", Placeholder: "CIDR", Category: CategoryListen, Restart: true,
		Usage: "accept PROXY protocol v1/v2 headers on TCP and TLS listeners from CIDR (your load balancer); from others they close the connection",
		Check: func(v any) error {
			ps, err := prefixes(v.([]string))
			if err != nil {
				return err
			}
			for _, p := range ps {
				if p.Bits() == 0 {
					return valueErrorf("%s trusts every address, so any client could claim any address: name your load balancers' addresses", p)
				}
			}
			return nil
		},
		Set: func(c *relay.Config, v any) { c.ProxyProtocolFrom, _ = prefixes(v.([]string)) },
	}}
}

// turnHosts is web.turn_hosts.
func turnHosts() Setting {
	return Setting{
		Key: "web.turn_hosts", Flag: "turn-host", Kind: KindStrings, Default: []string(nil),
		DefaultText: "every name; with ACME, the ACME domains", DocDefault: "every name (with ACME: the ACME domains)",
		Placeholder: "NAME", Category: CategoryWeb, Restart: true,
		Usage: "TLS server name NAME of the TURN service; TLS for other names goes to --web-backend (replaces the file's list)",
		Check: func(v any) error { _, err := hostNames(v.([]string)); return err },
		Set:   func(c *relay.Config, v any) { c.Web.TURNHosts, _ = hostNames(v.([]string)) },
	}
}

func hostNames(values []string) ([]string, error) {
	var out []string
	for _, h := range values {
		name, err := HostName(h)
		if err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}

// HostName checks a DNS name written in the configuration and returns it
// in lower case without a trailing dot.
func HostName(v string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(v, "."))
	switch {
	case name == "":
		return "", fmt.Errorf("empty name")
	case strings.ContainsAny(name, ":/ "):
		return "", fmt.Errorf("%q: write a bare DNS name such as turn.example.org (no scheme, port or path)", v)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "", fmt.Errorf("%q is an IP address; TLS clients send a DNS name in SNI, never an address", v)
	}
	return name, nil
}

func prefixes(vs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range vs {
		p, err := auth.ParsePrefix(v)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// credentialSettings are [auth] users, users_file and secrets: what a
// reload changes (a new auth.Authenticator).
func credentialSettings() []Setting {
	return []Setting{
		{
			Key: "auth.users", Flag: "user", Kind: KindMap, Default: map[string]string(nil), DocDefault: "none",
			Placeholder: "NAME:PASSWORD", Category: CategoryAuth,
			Usage: "static user NAME:PASSWORD (replaces the file's users)",
			Check: func(v any) error {
				users := v.(map[string]string)
				for _, name := range slices.Sorted(maps.Keys(users)) {
					if name == "" || strings.Contains(name, ":") {
						return valueErrorf("%q: a user name must be non-empty and without ':'", name)
					}
					if users[name] == "" {
						return valueErrorf("%s: empty password", name)
					}
				}
				return nil
			},
		},
		{
			Key: "auth.users_file", Flag: "users-file", Kind: KindString, Default: "", DocDefault: "none",
			TakesFile: true, Placeholder: "FILE", Category: CategoryAuth,
			Usage:  "read users from FILE: lines user:password or user:0x<md5 key hex>, # comments",
			Relate: func(get func(string) any) error { _, _, err := users(get); return err },
		},
		{
			Key: "auth.secrets", Flag: "secret", Kind: KindStrings, Default: []string(nil), DocDefault: "none",
			Placeholder: "S", Category: CategoryAuth,
			Usage: "TURN REST API shared secret S; the first mints, all verify (replaces the file's secrets)",
			Check: func(v any) error {
				for i, s := range v.([]string) {
					if s == "" {
						return fmt.Errorf("secret %d is empty: remove it or give a long random string", i+1)
					}
				}
				return nil
			},
		},
	}
}

// users merges auth.users with the users file. A user defined twice is an
// error rather than a silent override: the two passwords disagree.
func users(get func(string) any) (map[string]string, map[string][]byte, error) {
	out := maps.Clone(get("auth.users").(map[string]string))
	if out == nil {
		out = map[string]string{}
	}
	keys := map[string][]byte{}
	path := get("auth.users_file").(string)
	if path == "" {
		return out, keys, nil
	}
	fileUsers, fileKeys, err := auth.LoadUsersFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.users_file (--users-file): %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(fileUsers)) {
		if _, dup := out[name]; dup {
			return nil, nil, fmt.Errorf("auth.users_file (--users-file) %s: user %s is also in auth.users (--user): keep one", path, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(fileKeys)) {
		if _, dup := out[name]; dup {
			return nil, nil, fmt.Errorf("auth.users_file (--users-file) %s: user %s is also in auth.users (--user): keep one", path, name)
		}
	}
	maps.Copy(out, fileUsers)
	maps.Copy(keys, fileKeys)
	return out, keys, nil
}

// Users returns the static users of v (auth.users and the users file's
// passwords) and the users file's long-term keys, reading the file.
func Users(v Values) (map[string]string, map[string][]byte, error) {
	return users(getter(v))
}

// Secrets is the resolved auth.secrets of v.
func Secrets(v Values) []string { return Get(Settings(), v, "auth.secrets").([]string) }

// getter returns a get function over v for Relate-style helpers.
func getter(v Values) func(string) any {
	decls := Settings()
	return func(key string) any { return Get(decls, v, key) }
}

// defaultSTUNServers are asked for this host's public address when
// relay.external_ip = "auto" and relay.stun_servers is not set (a fresh
// slice each time: no package-level mutable state).
func defaultSTUNServers() []string {
	return []string{"stun.l.google.com:19302", "stun.cloudflare.com:3478"}
}

// addressSettings are [relay] ip, default_family, external_ip,
// stun_servers, allow_peers and deny_peers.
func addressSettings() []Setting {
	return []Setting{
		{
			Key: "relay.ip", Flag: "relay-ip", Kind: KindStrings, Default: []string(nil),
			DefaultText: "the listener's address if specific, else the host's primary address of each family",
			DocDefault:  "listener's address for its family, else the default-route address of each family",
			TOMLDefault: `""`, Placeholder: "IP", Category: CategoryRelay, Restart: true,
			Usage:  "bind relay sockets on IP: one address of each family (repeatable, or IPV4,IPV6)",
			Decode: oneOrMany(`write one address ("203.0.113.7") or one of each family (["203.0.113.7", "2001:db8::7"])`),
			Check:  func(v any) error { _, _, err := relayIPs(v.([]string)); return err },
			Set: func(c *relay.Config, v any) {
				first, second, _ := relayIPs(v.([]string)) // checked
				c.RelayIP, c.RelayIPs = first, nil
				if second.IsValid() {
					c.RelayIPs = []netip.Addr{second}
				}
			},
		},
		{
			Key: "relay.default_family", Kind: KindString, Default: "ipv4", ZeroIsDefault: true, Category: CategoryRelay, Restart: true,
			Usage: "family of the relayed address of an Allocate without REQUESTED-ADDRESS-FAMILY: ipv4, ipv6 or keep",
			Check: func(v any) error { _, err := relay.ParseFamily(v.(string)); return err },
			Set:   func(c *relay.Config, v any) { c.DefaultFamily, _ = relay.ParseFamily(v.(string)) },
		},
		{
			Key: "relay.external_ip", Flag: "external-ip", Kind: KindStrings, Default: []string(nil),
			DocDefault: "none", TOMLDefault: `""`, Placeholder: "PUBLIC", Category: CategoryRelay, Restart: true,
			Usage:  "advertise PUBLIC in XOR-RELAYED-ADDRESS behind 1:1 NAT, or RELAY=PUBLIC for one relay address, or auto to ask STUN servers (repeatable)",
			Decode: externalIPDecode,
			Check:  func(v any) error { _, _, err := externalIPs(v.([]string)); return err },
			Set: func(c *relay.Config, v any) {
				var auto bool
				c.ExternalIP, auto, _ = externalIPs(v.([]string)) // checked
				c.DiscoverExternalIP = nil
				if auto {
					c.DiscoverExternalIP = defaultSTUNServers() // stun_servers, set next, may replace it
				}
			},
		},
		{
			Key: "relay.stun_servers", Flag: "stun-server", Kind: KindStrings, Default: defaultSTUNServers(), ZeroIsDefault: true,
			DefaultText: strings.Join(defaultSTUNServers(), ", "), DocDefault: "Google's and Cloudflare's",
			Placeholder: "HOST:PORT", Category: CategoryRelay, Restart: true,
			Usage: "with --external-ip auto, ask the STUN server HOST:PORT (repeatable; replaces the file's list)",
			Check: func(v any) error {
				for _, srv := range v.([]string) {
					if _, port, err := net.SplitHostPort(srv); err != nil || port == "" {
						return valueErrorf("%q: write HOST:PORT, e.g. stun.example.org:3478", srv)
					}
				}
				return nil
			},
			Set: func(c *relay.Config, v any) {
				if c.DiscoverExternalIP != nil {
					c.DiscoverExternalIP = slices.Clone(v.([]string))
				}
			},
		},
		{
			Key: "relay.allow_peers", Flag: "allow-peer", Kind: KindStrings, Default: []string(nil), DocDefault: "none",
			Placeholder: "CIDR", Category: CategoryRelay,
			Usage: "let peers in CIDR through even if the default policy denies them, e.g. 127.0.0.0/8 for tests",
			Check: func(v any) error { _, err := prefixes(v.([]string)); return err },
		},
		{
			Key: "relay.deny_peers", Flag: "deny-peer", Kind: KindStrings, Default: []string(nil), DocDefault: "none",
			Placeholder: "CIDR", Category: CategoryRelay,
			Usage: "deny peers in CIDR on top of the default policy",
			Check: func(v any) error { _, err := prefixes(v.([]string)); return err },
		},
	}
}

// oneOrMany decodes a string (one value, "" for none) or an array of
// strings; how says what to write instead.
func oneOrMany(how string) func(raw any) (any, error) {
	return func(raw any) (any, error) {
		switch raw := raw.(type) {
		case string:
			if raw == "" {
				return []string(nil), nil
			}
			return []string{raw}, nil
		case []any:
			out := make([]string, 0, len(raw))
			for _, x := range raw {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("%v is not a string: %s", x, how)
				}
				out = append(out, s)
			}
			return out, nil
		}
		return nil, fmt.Errorf("%s", how)
	}
}

// externalIPDecode reads relay.external_ip: one string (an address, or
// "auto"), an array of strings ("PUBLIC", "RELAY=PUBLIC", "auto"), or a
// table of relay address = public address, read as its "RELAY=PUBLIC"
// pairs (the form --external-ip takes).
func externalIPDecode(raw any) (any, error) {
	const how = `write one address ("203.0.113.7"), "auto", a list (["203.0.113.7", "2001:db8::7"]), or a table of relay address = public address ({ "10.0.0.5" = "203.0.113.7" })`
	if t, ok := raw.(map[string]any); ok {
		out := make([]string, 0, len(t))
		for _, relayIP := range slices.Sorted(maps.Keys(t)) {
			public, ok := t[relayIP].(string)
			if !ok {
				return nil, fmt.Errorf("the value for %q is not a string: %s", relayIP, how)
			}
			out = append(out, relayIP+"="+public)
		}
		return out, nil
	}
	return oneOrMany(how)(raw)
}

// externalIPs validates relay.external_ip: the static mapping, and
// whether "auto" discovery was asked for.
func externalIPs(values []string) (relay.ExternalIPs, bool, error) {
	auto := false
	var static []string
	for _, v := range values {
		if strings.EqualFold(strings.TrimSpace(v), "auto") {
			auto = true
			continue
		}
		static = append(static, v)
	}
	m, err := relay.ParseExternalIPs(static)
	return m, auto, err
}

// AdvertisedHost is the one address v advertises for relay addresses in
// general, for ICE server URLs: the IPv4 PUBLIC, else the IPv6 one, else
// the only mapped public address; invalid when there is none (or "auto",
// known only once the server runs).
func AdvertisedHost(v Values) netip.Addr {
	m, _, _ := externalIPs(Get(Settings(), v, "relay.external_ip").([]string))
	return HostOf(m)
}

// ExternalAuto reports whether relay.external_ip of v includes "auto".
func ExternalAuto(v Values) bool {
	_, auto, _ := externalIPs(Get(Settings(), v, "relay.external_ip").([]string))
	return auto
}

// HostOf picks the address of m to write in ICE server URLs.
func HostOf(m relay.ExternalIPs) netip.Addr {
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

// RelayIPs is the resolved relay.ip of v: the IPv4 address, or the only
// one, and the IPv6 address when an IPv4 one is given too.
func RelayIPs(v Values) (first, second netip.Addr) {
	first, second, _ = relayIPs(Get(Settings(), v, "relay.ip").([]string))
	return first, second
}

// Peers is the resolved relay.allow_peers and relay.deny_peers of v.
func Peers(v Values) (allow, deny []netip.Prefix) {
	allow, _ = prefixes(Get(Settings(), v, "relay.allow_peers").([]string))
	deny, _ = prefixes(Get(Settings(), v, "relay.deny_peers").([]string))
	return allow, deny
}

// relayIPs parses relay.ip: at most one address of each family, in values
// of one or more addresses separated by commas.
func relayIPs(values []string) (first, second netip.Addr, err error) {
	var v4, v6 netip.Addr
	for _, v := range values {
		for _, one := range strings.Split(v, ",") {
			one = strings.TrimSpace(one)
			if one == "" {
				continue
			}
			ip, err := hostIP(one)
			if err != nil {
				return netip.Addr{}, netip.Addr{}, err
			}
			slot := &v4
			if ip.Is6() {
				slot = &v6
			}
			if slot.IsValid() && *slot != ip {
				return netip.Addr{}, netip.Addr{}, fmt.Errorf("%v and %v: give at most one address of each family", *slot, ip)
			}
			*slot = ip
		}
	}
	if !v4.IsValid() {
		return v6, netip.Addr{}, nil
	}
	return v4, v6, nil
}

// hostIP parses a unicast address of this host (or of its NAT).
// IPv4-mapped IPv6 is unmapped so it compares equal to the IPv4 form.
func hostIP(v string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, valueErrorf("%q: not an IP address: write e.g. 203.0.113.7 or 2001:db8::7", v)
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() || ip.IsMulticast() || ip.Zone() != "" {
		return netip.Addr{}, valueErrorf("%s: write one unicast address, or leave it unset", v)
	}
	return ip, nil
}

// tlsSettings are the [tls] table: certificate files (reloaded on SIGHUP
// and when they change) and ACME (restart-only).
func tlsSettings() []Setting {
	return []Setting{
		{
			Key: "tls.cert", Flag: "tls-cert", Kind: KindString, Default: "",
			DefaultText: "a self-signed certificate made at start", DocDefault: "self-signed",
			TakesFile: true, Placeholder: "FILE", Category: CategoryTLS,
			Requires: "tls.key", RequiresFix: "give both or neither (neither: a self-signed certificate)",
			Usage: "PEM certificate chain FILE for tls:// and tcp+tls:// listeners",
		},
		{
			Key: "tls.key", Flag: "tls-key", Kind: KindString, Default: "", DocDefault: "",
			TakesFile: true, Placeholder: "FILE", Category: CategoryTLS,
			Requires: "tls.cert", RequiresFix: "give both or neither (neither: a self-signed certificate)",
			Usage: "PEM private key FILE of --tls-cert",
		},
		{
			Key: "tls.acme", Flag: "acme", Kind: KindBool, Default: false, DocDefault: "off", Category: CategoryTLS, Restart: true,
			Usage:  "obtain and renew the certificate automatically over ACME (TLS-ALPN-01 on port 443)",
			Relate: relateACME,
		},
		{
			Key: "tls.domains", Flag: "acme-domain", Kind: KindStrings, Default: []string(nil), DocDefault: "none",
			Placeholder: "NAME", Category: CategoryTLS, Restart: true,
			Requires: "tls.acme", RequiresFix: "set acme = true to get certificates for them, or remove them",
			Usage: "DNS NAME of the ACME certificate (repeatable; replaces the file's list)",
			Check: func(v any) error { _, err := acmeDomains(v.([]string)); return err },
		},
		{
			Key: "tls.acme_ca", Flag: "acme-ca", Kind: KindString, Default: relay.DefaultACMECA, ZeroIsDefault: true,
			DocDefault: "Let's Encrypt", Placeholder: "URL", Category: CategoryTLS, Restart: true,
			Usage: "ACME directory URL",
			Check: func(v any) error {
				if !strings.HasPrefix(v.(string), "https://") {
					return valueErrorf("%q: write the https:// URL of the CA's ACME directory", v)
				}
				return nil
			},
		},
		{
			Key: "tls.acme_email", Flag: "acme-email", Kind: KindString, Default: "", DocDefault: "none",
			Placeholder: "EMAIL", Category: CategoryTLS, Restart: true,
			Usage: "contact EMAIL of the ACME account (expiry warnings)",
		},
		{
			Key: "tls.acme_storage", Flag: "acme-storage", Kind: KindString, Default: "",
			DefaultText: "$STATE_DIRECTORY/acme, else $XDG_DATA_HOME/postern/acme, else ~/.local/share/postern/acme",
			DocDefault:  "`$STATE_DIRECTORY/acme`, else `$XDG_DATA_HOME/postern/acme`, else `~/.local/share/postern/acme`",
			TakesFile:   true, Placeholder: "DIR", Category: CategoryTLS, Restart: true,
			Usage: "DIR keeping the ACME account and certificates",
		},
		{
			Key: "tls.acme_ca_root", Flag: "acme-ca-root", Kind: KindString, Default: "", DocDefault: "system roots",
			TakesFile: true, Placeholder: "FILE", Category: CategoryTLS, Restart: true,
			Usage: "trust the PEM root certificate(s) in FILE for the ACME CA's HTTPS API (private or test CAs)",
		},
	}
}

// relateACME checks tls.acme against the certificate files and domains.
func relateACME(get func(string) any) error {
	if !get("tls.acme").(bool) {
		return nil
	}
	if get("tls.cert").(string) != "" {
		return fmt.Errorf("tls.acme (--acme) and tls.cert (--tls-cert): choose one way to get the certificate")
	}
	if len(get("tls.domains").([]string)) == 0 {
		return fmt.Errorf("tls.acme (--acme) is on but tls.domains (--acme-domain) is empty: list the DNS names of this server, e.g. domains = [\"turn.example.org\"]")
	}
	return nil
}

func acmeDomains(values []string) ([]string, error) {
	var out []string
	for _, d := range values {
		name, err := HostName(d)
		if err == nil {
			err = relay.ACMEIdentifier(name)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}

// TLSFiles is the resolved tls.cert and tls.key of v; both empty: none
// (self-signed or ACME).
func TLSFiles(v Values) (cert, key string) {
	return Get(Settings(), v, "tls.cert").(string), Get(Settings(), v, "tls.key").(string)
}

// ACME is the resolved ACME part of [tls]; Domains is nil when ACME is
// off. Storage is as written ("" for the default, resolved at start).
type ACME struct {
	Domains                    []string // normalized
	CA, Email, Storage, CARoot string
}

// ACMEOf returns the ACME settings of v.
func ACMEOf(v Values) ACME {
	get := getter(v)
	if !get("tls.acme").(bool) {
		return ACME{}
	}
	domains, _ := acmeDomains(get("tls.domains").([]string))
	return ACME{Domains: domains, CA: get("tls.acme_ca").(string), Email: get("tls.acme_email").(string),
		Storage: get("tls.acme_storage").(string), CARoot: get("tls.acme_ca_root").(string)}
}

// Defaults of [ice_servers] and [credentials_api].
const (
	// DefaultICEUser is the USER part of minted EXPIRY:USER usernames.
	DefaultICEUser = "postern"
	// DefaultICETTL is how long a minted credential stays valid.
	DefaultICETTL = 24 * time.Hour
	// DefaultAPIMaxTTL caps the lifetime an API request may ask for.
	DefaultAPIMaxTTL = 48 * time.Hour
)

// iceSettings are [ice_servers] and [credentials_api]: what a reload
// changes but credentials_api.listen.
func iceSettings() []Setting {
	return []Setting{
		{
			Key: "ice_servers.host", Kind: KindString, Default: "", DocDefault: "derived", Category: CategoryAPI,
			Usage: "the DNS name or address written in the URLs; empty: from relay.external_ip, relay.ip, the listener or the default-route address",
			Check: func(v any) error { _, err := ICEHost(v.(string)); return err },
		},
		{
			Key: "ice_servers.user", Kind: KindString, Default: DefaultICEUser, ZeroIsDefault: true, Category: CategoryAPI,
			Usage: "the USER of minted EXPIRY:USER usernames when the caller names none",
			Check: func(v any) error {
				if err := iceapi.CheckUser(v.(string)); err != nil {
					return valueErrorf("%q: %v", v, err)
				}
				return nil
			},
		},
		{
			Key: "ice_servers.ttl", Kind: KindDuration, Default: DefaultICETTL, ZeroIsDefault: true, Category: CategoryAPI,
			Usage: "how long minted credentials stay valid when the caller does not say",
			Check: atLeastASecond(DefaultICETTL),
		},
		{
			Key: "credentials_api.listen", Flag: "credentials-api", Kind: KindString, Default: "",
			DefaultText: "off", Placeholder: "ADDR", Category: CategoryAPI, Restart: true,
			Usage:  "serve POST /v1/ice-servers on ADDR: HOST:PORT or https://HOST:PORT (HTTPS, needs --tls-cert), or http://127.0.0.1:PORT (loopback only)",
			Check:  func(v any) error { _, _, err := APIListen(v.(string)); return err },
			Relate: relateAPI,
		},
		{
			Key: "credentials_api.api_keys", Flag: "api-key", Kind: KindStrings, Default: []string(nil), DocDefault: "none",
			Placeholder: "KEY", Category: CategoryAPI, ReloadsWith: "credentials_api.listen",
			Usage: "accept KEY as Authorization: Bearer KEY on the credentials API (replaces the file's keys)",
			Check: func(v any) error {
				for i, k := range v.([]string) {
					if err := iceapi.CheckKey(k); err != nil {
						return fmt.Errorf("key %d: %w", i+1, err)
					}
				}
				return nil
			},
		},
		{
			Key: "credentials_api.max_ttl", Kind: KindDuration, Default: DefaultAPIMaxTTL, ZeroIsDefault: true,
			Category: CategoryAPI, ReloadsWith: "credentials_api.listen",
			Usage: "the longest credential lifetime a request may ask for",
			Check: atLeastASecond(DefaultAPIMaxTTL),
		},
		{
			Key: "credentials_api.allow_origins", Kind: KindStrings, Default: []string(nil), DocDefault: "none",
			Category: CategoryAPI, ReloadsWith: "credentials_api.listen",
			Usage: "browser origins allowed to call the API (CORS); \"*\" allows any",
			Check: func(v any) error { _, err := origins(v.([]string)); return err },
		},
	}
}

// atLeastASecond checks a credential lifetime: whole seconds.
func atLeastASecond(def time.Duration) func(v any) error {
	return func(v any) error {
		if d := v.(time.Duration); d < time.Second {
			return valueErrorf("%v: write a duration of at least a second, such as %q", d, def.String())
		}
		return nil
	}
}

func origins(values []string) ([]string, error) {
	out := make([]string, 0, len(values))
	for _, o := range values {
		norm, err := iceapi.ParseOrigin(o)
		if err != nil {
			return nil, err
		}
		out = append(out, norm)
	}
	return out, nil
}

// relateAPI checks the credentials API against the keys, the
// certificate, [ice_servers] and the secrets it mints with.
func relateAPI(get func(string) any) error {
	listen := get("credentials_api.listen").(string)
	keys := get("credentials_api.api_keys").([]string)
	if listen == "" {
		if len(keys) > 0 || len(get("credentials_api.allow_origins").([]string)) > 0 {
			return fmt.Errorf("credentials_api.listen (--credentials-api) is empty, so the API is off, but credentials_api.api_keys (--api-key) or allow_origins are set: " +
				"set listen to turn the API on, or remove them")
		}
		return nil
	}
	_, plain, _ := APIListen(listen) // checked
	if !plain && get("tls.cert").(string) == "" && !get("tls.acme").(bool) {
		return fmt.Errorf("credentials_api.listen (--credentials-api) %q is HTTPS, which needs a real certificate: set tls.cert and tls.key (--tls-cert, --tls-key; the TURN listeners' certificate) or tls.acme, "+
			"or serve plain HTTP on loopback behind your TLS reverse proxy: http://127.0.0.1:PORT", listen)
	}
	if len(keys) == 0 {
		return fmt.Errorf("credentials_api.api_keys (--api-key): the API is on (listen %q) but has no key: add one, e.g. the output of `openssl rand -base64 32`", listen)
	}
	if ttl, maxTTL := get("ice_servers.ttl").(time.Duration), get("credentials_api.max_ttl").(time.Duration); ttl > maxTTL {
		return fmt.Errorf("ice_servers.ttl %v > credentials_api.max_ttl %v: the API's default lifetime must fit under its maximum: lower ttl or raise max_ttl", ttl, maxTTL)
	}
	// With no credentials at all serve generates a secret and the API
	// mints from it; with only static users there is nothing to mint with.
	hasUsers := len(get("auth.users").(map[string]string)) > 0 || get("auth.users_file").(string) != ""
	if len(get("auth.secrets").([]string)) == 0 && hasUsers {
		return fmt.Errorf("credentials_api.listen (--credentials-api) %q: the API mints TURN REST API credentials and needs auth.secrets (--secret): add a secret", listen)
	}
	return nil
}

// ICEHost checks the host clients dial: an IP address (brackets optional
// for IPv6) or a DNS name, without scheme or port. It returns the
// canonical form, which the URLs bracket when it is IPv6.
func ICEHost(v string) (string, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	if ip, err := netip.ParseAddr(h); err == nil {
		ip = ip.Unmap()
		if ip.IsUnspecified() || ip.IsMulticast() || ip.Zone() != "" {
			return "", fmt.Errorf("%q: clients cannot dial this address: write the server's public name or address", v)
		}
		return ip.String(), nil
	}
	const want = "write a DNS name such as turn.example.org or an IP address, without scheme or port"
	name := strings.ToLower(strings.TrimSuffix(v, "."))
	if name == "" || len(name) > 253 {
		return "", fmt.Errorf("%q: %s", v, want)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.ContainsFunc(label, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') }) {
			return "", fmt.Errorf("%q: %s", v, want)
		}
	}
	return name, nil
}

// APIListen parses credentials_api.listen: "HOST:PORT" or
// "https://HOST:PORT" for HTTPS, "http://HOST:PORT" for plain HTTP, which
// only a loopback HOST may use. It returns the address to bind.
func APIListen(v string) (addr string, plain bool, err error) {
	rest := v
	if r, ok := strings.CutPrefix(v, "http://"); ok {
		rest, plain = r, true
	} else if r, ok := strings.CutPrefix(v, "https://"); ok {
		rest = r
	} else if strings.Contains(v, "://") {
		return "", false, valueErrorf("%q: write HOST:PORT or https://HOST:PORT (HTTPS), or http://127.0.0.1:PORT (plain HTTP, loopback only)", v)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return "", false, valueErrorf("%q: %v: write HOST:PORT, e.g. https://:8443 or http://127.0.0.1:8080", v, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", false, valueErrorf("%q: port %q is not a number from 0 to 65535", v, port)
	}
	loopback := host == "localhost"
	if host != "" && !loopback {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", false, valueErrorf("%q: host %q is not an IP address (listeners bind addresses, not names)", v, host)
		}
		loopback = ip.Unmap().IsLoopback()
	}
	// The API key travels in every request: in clear text only where
	// nobody else can see it.
	if plain && !loopback {
		return "", false, valueErrorf("%q: plain HTTP would send API keys and credentials in clear text: "+
			"use http:// only on a loopback address (http://127.0.0.1:PORT, behind a TLS reverse proxy), or https:// with tls.cert and tls.key", v)
	}
	return net.JoinHostPort(host, port), plain, nil
}

// ICE is the resolved [ice_servers] table.
type ICE struct {
	Host string        // canonical DNS name or IP; "" to derive it
	User string        // default USER
	TTL  time.Duration // default credential lifetime
}

// ICEOf returns the [ice_servers] settings of v.
func ICEOf(v Values) ICE {
	get := getter(v)
	host, _ := ICEHost(get("ice_servers.host").(string))
	if get("ice_servers.host").(string) == "" {
		host = ""
	}
	return ICE{Host: host, User: get("ice_servers.user").(string), TTL: get("ice_servers.ttl").(time.Duration)}
}

// API is the resolved [credentials_api] table; Listen is "" when the API
// is off.
type API struct {
	Listen  string // as written, for messages
	Addr    string // HOST:PORT to bind
	Plain   bool   // plain HTTP (loopback only); else HTTPS
	Keys    []string
	MaxTTL  time.Duration
	Origins []string // normalized
}

// APIOf returns the [credentials_api] settings of v.
func APIOf(v Values) API {
	get := getter(v)
	a := API{Listen: get("credentials_api.listen").(string), Keys: get("credentials_api.api_keys").([]string),
		MaxTTL: get("credentials_api.max_ttl").(time.Duration)}
	a.Origins, _ = origins(get("credentials_api.allow_origins").([]string))
	if a.Listen != "" {
		a.Addr, a.Plain, _ = APIListen(a.Listen)
	}
	return a
}

// DefaultAdminListen is admin.listen's default (admin.DefaultAddr).
const DefaultAdminListen = "127.0.0.1:9641"

// EnvAdminToken may hold the admin token instead of --admin-token, which
// other local users could read in ps.
const EnvAdminToken = "POSTERN_ADMIN_TOKEN"

// adminSettings are the [admin] table: the admin HTTP listener.
func adminSettings() []Setting {
	return []Setting{
		{
			Key: "admin.listen", Flag: "admin", Kind: KindString, Default: DefaultAdminListen, ZeroIsDefault: true,
			Placeholder: "ADDR", Category: CategoryAdmin, Restart: true,
			Usage: "admin HTTP listener (metrics, health, sessions API) at ADDR (HOST:PORT); \"\" or off disables it",
			FlagValue: func(v any) any {
				if v == "" {
					return "off"
				}
				return v
			},
			Check: func(v any) error {
				l := strings.TrimSpace(v.(string))
				if strings.EqualFold(l, "off") {
					return nil
				}
				host, _, err := net.SplitHostPort(l)
				if err != nil {
					return valueErrorf("%q: write HOST:PORT, e.g. %s, or \"off\": %v", l, DefaultAdminListen, err)
				}
				if host != "" && host != "localhost" {
					if _, err := netip.ParseAddr(host); err != nil {
						return valueErrorf("%q: host %q is not an IP address", l, host)
					}
				}
				return nil
			},
		},
		{
			Key: "admin.token", Flag: "admin-token", Kind: KindString, Default: "", DocDefault: "none",
			Placeholder: "TOKEN", Category: CategoryAdmin, Restart: true, EnvVar: EnvAdminToken,
			Usage: "require the bearer TOKEN on /metrics, /api/ and the dashboard of the admin listener",
			Relate: func(get func(string) any) error {
				if get("admin.token").(string) != "" && adminOff(get("admin.listen").(string)) {
					return fmt.Errorf("admin.token (--admin-token) is set but the admin listener is off (admin.listen = \"off\"): remove one")
				}
				return nil
			},
		},
	}
}

func adminOff(l string) bool { return strings.EqualFold(strings.TrimSpace(l), "off") }

// Admin is the resolved [admin] table.
type Admin struct {
	Listen   string // HOST:PORT to bind; "" when off
	Explicit bool   // the operator named another address than the default: failing to bind is fatal
	Token    string
}

// AdminOf returns the [admin] settings of v.
func AdminOf(v Values) Admin {
	l := strings.TrimSpace(Get(Settings(), v, "admin.listen").(string))
	if adminOff(l) {
		return Admin{}
	}
	// Writing the default address counts as the default (Resolve drops
	// it): only another address makes a failure to bind fatal.
	return Admin{Listen: l, Explicit: l != DefaultAdminListen, Token: Get(Settings(), v, "admin.token").(string)}
}
