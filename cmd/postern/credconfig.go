package main

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/iceapi"
)

// ICEServersConfig is the [ice_servers] table: what the iceServers JSON
// that Postern hands out contains (postern ice-servers --config, postern
// credential --config and the credentials API).
type ICEServersConfig struct {
	// Host is the DNS name or address written in the URLs; empty: derived
	// from relay.external_ip, relay.ip, the listener's address, or this
	// host's default-route address.
	Host string `toml:"host"`
	// User is the USER part of minted EXPIRY:USER usernames when the caller
	// names none.
	User string `toml:"user"`
	// TTL is how long minted credentials stay valid when the caller does
	// not say.
	TTL Duration `toml:"ttl"`
}

// CredentialsAPIConfig is the [credentials_api] table: the optional HTTPS
// endpoint POST /v1/ice-servers (package iceapi).
type CredentialsAPIConfig struct {
	// Listen is where the API listens: "HOST:PORT" or "https://HOST:PORT"
	// (HTTPS with the [tls] certificate), or "http://HOST:PORT" with a
	// loopback HOST. Empty: the API is off.
	Listen string `toml:"listen"`
	// APIKeys are the keys accepted as "Authorization: Bearer KEY".
	APIKeys []string `toml:"api_keys"`
	// MaxTTL caps the credential lifetime a request may ask for.
	MaxTTL Duration `toml:"max_ttl"`
	// AllowOrigins are the browser origins allowed to call the API (CORS);
	// "*" allows any.
	AllowOrigins []string `toml:"allow_origins"`
}

// Defaults of the [ice_servers] and [credentials_api] tables.
const (
	defaultICEUser   = restCredentialUser
	defaultICETTL    = restCredentialTTL
	defaultAPIMaxTTL = 48 * time.Hour
)

// Flags of the credentials API on serve, and their --help category.
const (
	flagCredentialsAPI = "credentials-api"
	flagAPIKey         = "api-key"
	catAPI             = "Credentials API"
)

// iceSettings is the validated [ice_servers] table.
type iceSettings struct {
	host string        // canonical DNS name or IP; "" to derive it
	user string        // default USER
	ttl  time.Duration // default credential lifetime
}

// apiSettings is the validated [credentials_api] table. listen is empty when
// the API is off.
type apiSettings struct {
	listen  string // as written, for messages
	addr    string // HOST:PORT to bind
	plain   bool   // plain HTTP (loopback only); else HTTPS
	keys    []string
	maxTTL  time.Duration
	origins []string
}

// loadICE validates the [ice_servers] and [credentials_api] tables. It runs
// after the auth and TLS settings, which the API depends on.
func (s *settings) loadICE(c Config) error {
	var err error
	if s.ice, err = parseICESettings(c.ICEServers); err != nil {
		return err
	}

	a := c.CredentialsAPI
	if s.api.maxTTL, err = positiveKey(a.MaxTTL, defaultAPIMaxTTL, "credentials_api.max_ttl"); err != nil {
		return err
	}
	s.api.keys = append([]string(nil), a.APIKeys...)
	s.api.origins = append([]string(nil), a.AllowOrigins...)
	if a.Listen == "" {
		if len(a.APIKeys) > 0 || len(a.AllowOrigins) > 0 {
			return fmt.Errorf("credentials_api.listen (--%s) is empty, so the API is off, but credentials_api.api_keys (--%s) or allow_origins are set: "+
				"set listen to turn the API on, or remove them", flagCredentialsAPI, flagAPIKey)
		}
		return nil
	}
	s.api.listen = a.Listen
	if s.api.addr, s.api.plain, err = parseAPIListen(a.Listen); err != nil {
		return err
	}
	if !s.api.plain && s.tlsCert == "" && !s.port443.acme {
		return fmt.Errorf("credentials_api.listen (--%s) %q is HTTPS, which needs a real certificate: set tls.cert and tls.key (--%s, --%s; the TURN listeners' certificate) or tls.acme, "+
			"or serve plain HTTP on loopback behind your TLS reverse proxy: http://127.0.0.1:PORT", flagCredentialsAPI, a.Listen, flagTLSCert, flagTLSKey)
	}
	if len(a.APIKeys) == 0 {
		return fmt.Errorf("credentials_api.api_keys (--%s): the API is on (listen %q) but has no key: add one, e.g. the output of `openssl rand -base64 32`", flagAPIKey, a.Listen)
	}
	for i, k := range a.APIKeys {
		if err := iceapi.CheckKey(k); err != nil {
			return fmt.Errorf("credentials_api.api_keys (--%s): key %d: %w", flagAPIKey, i+1, err)
		}
	}
	for i, o := range a.AllowOrigins {
		norm, err := iceapi.ParseOrigin(o)
		if err != nil {
			return fmt.Errorf("credentials_api.allow_origins: %w", err)
		}
		s.api.origins[i] = norm
	}
	if s.ice.ttl > s.api.maxTTL {
		return fmt.Errorf("ice_servers.ttl %v > credentials_api.max_ttl %v: the API's default lifetime must fit under its maximum: lower ttl or raise max_ttl",
			s.ice.ttl, s.api.maxTTL)
	}
	// With no credentials at all serve generates a secret and the API mints
	// from it; with only static users there is nothing to mint with.
	if len(s.secrets) == 0 && (len(s.users) > 0 || len(s.keys) > 0) {
		return fmt.Errorf("credentials_api.listen (--%s) %q: the API mints TURN REST API credentials and needs auth.secrets (--%s): add a secret",
			flagCredentialsAPI, a.Listen, flagSecret)
	}
	return nil
}

// parseICESettings validates the [ice_servers] table alone (the credential
// and ice-servers commands read only it).
func parseICESettings(c ICEServersConfig) (iceSettings, error) {
	var s iceSettings
	var err error
	if c.Host != "" {
		if s.host, err = parseICEHost(c.Host); err != nil {
			return iceSettings{}, fmt.Errorf("ice_servers.host: %w", err)
		}
	}
	s.user = cmp.Or(c.User, defaultICEUser)
	if err := iceapi.CheckUser(s.user); err != nil {
		return iceSettings{}, fmt.Errorf("ice_servers.user %q: %w", s.user, err)
	}
	if s.ttl, err = positiveKey(c.TTL, defaultICETTL, "ice_servers.ttl"); err != nil {
		return iceSettings{}, err
	}
	return s, nil
}

// positiveKey is positive for a key without a flag: d, or def when d is
// zero; at least a second, since credential lifetimes are whole seconds.
func positiveKey(d Duration, def time.Duration, key string) (time.Duration, error) {
	switch {
	case d == 0:
		return def, nil
	case time.Duration(d) < time.Second:
		return 0, fmt.Errorf("%s %v: write a duration of at least a second, such as %q", key, time.Duration(d), def.String())
	}
	return time.Duration(d), nil
}

// parseICEHost checks the host clients dial: an IP address (brackets
// optional for IPv6) or a DNS name, without scheme or port. It returns the
// canonical form, which iceURLs brackets when it is IPv6.
func parseICEHost(v string) (string, error) {
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

// parseAPIListen parses credentials_api.listen: "HOST:PORT" or
// "https://HOST:PORT" for HTTPS, "http://HOST:PORT" for plain HTTP, which
// only a loopback HOST may use. It returns the address to bind.
func parseAPIListen(v string) (addr string, plain bool, err error) {
	rest := v
	if r, ok := strings.CutPrefix(v, "http://"); ok {
		rest, plain = r, true
	} else if r, ok := strings.CutPrefix(v, "https://"); ok {
		rest = r
	} else if strings.Contains(v, "://") {
		return "", false, fmt.Errorf("credentials_api.listen (--%s) %q: write HOST:PORT or https://HOST:PORT (HTTPS), or http://127.0.0.1:PORT (plain HTTP, loopback only)", flagCredentialsAPI, v)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return "", false, fmt.Errorf("credentials_api.listen (--%s) %q: %v: write HOST:PORT, e.g. https://:8443 or http://127.0.0.1:8080", flagCredentialsAPI, v, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", false, fmt.Errorf("credentials_api.listen (--%s) %q: port %q is not a number from 0 to 65535", flagCredentialsAPI, v, port)
	}
	loopback := host == "localhost"
	if host != "" && !loopback {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", false, fmt.Errorf("credentials_api.listen (--%s) %q: host %q is not an IP address (listeners bind addresses, not names)", flagCredentialsAPI, v, host)
		}
		loopback = ip.Unmap().IsLoopback()
	}
	// The API key travels in every request: in clear text only where
	// nobody else can see it.
	if plain && !loopback {
		return "", false, fmt.Errorf("credentials_api.listen (--%s) %q: plain HTTP would send API keys and credentials in clear text: "+
			"use http:// only on a loopback address (http://127.0.0.1:PORT, behind a TLS reverse proxy), or https:// with tls.cert and tls.key", flagCredentialsAPI, v)
	}
	return net.JoinHostPort(host, port), plain, nil
}
