package main

import (
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"time"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
)

// Defaults, shared by the flags' help, Config.settings and
// config.toml.example (a test checks the example against them).
const ()

// maxRealmLen is the limit of RFC 8489 §14.9 (config.MaxRealmLen).
const maxRealmLen = config.MaxRealmLen

// defaultRealm is realm's default (config.DefaultRealm).
const defaultRealm = config.DefaultRealm

// settings is a validated Config with defaults filled in, in the types the
// packages take. It holds no open resources.
type settings struct {
	listeners         []relay.ListenSpec
	listenersExplicit bool // the operator named the listeners

	users   map[string]string // user -> password
	keys    map[string][]byte // user -> long-term key, from the users file
	secrets []string

	relayIP    netip.Addr // the IPv4 relay address, or the only one; invalid: chosen per listener by relay
	externalIP netip.Addr // the one address of externalIPs for ICE URLs; invalid: none
	allowPeers []netip.Prefix
	denyPeers  []netip.Prefix

	// relayIP6 is the IPv6 relay address when relayIP is IPv4 (invalid:
	// none given); defaultFamily is relay.default_family.
	relayIP6      netip.Addr
	defaultFamily relay.Family

	tlsCert, tlsKey string // both empty: self-signed

	ice iceSettings // [ice_servers]

	externalIPs  relay.ExternalIPs // relay.external_ip without "auto"
	externalAuto bool              // relay.external_ip includes "auto"
	stunServers  []string          // relay.stun_servers, defaults filled in
	admin        adminSettings     // [admin]
	api          apiSettings       // [credentials_api]; api.listen == "" when off

	port443 port443Settings // [web], proxy_protocol_from, ACME in [tls]

	declared config.Values // the settings of config.Settings, defaults filled in
}

// relayPorts is the resolved relay port range.
func (s settings) relayPorts() allocations.PortRange {
	var c relay.Config
	config.Apply(config.Settings(), s.declared, &c)
	return c.RelayPorts
}

// realm is the resolved realm.
func (s settings) realm() string { return config.Realm(s.declared) }

// settings validates c and fills in defaults. Errors name the TOML key and
// the flag, and say how to fix the value.
func (c Config) settings() (settings, error) {
	var s settings

	if len(c.Listen) == 0 {
		s.listeners = relay.DefaultListeners()
	} else {
		s.listenersExplicit = true
		for _, v := range c.Listen {
			spec, err := relay.ParseListenSpec(v)
			if err != nil {
				return settings{}, fmt.Errorf("listen (--%s): %w", flagListen, err)
			}
			s.listeners = append(s.listeners, spec)
		}
	}

	if err := s.loadUsers(c.Auth); err != nil {
		return settings{}, err
	}
	for i, secret := range c.Auth.Secrets {
		if secret == "" {
			return settings{}, fmt.Errorf("auth.secrets (--%s): secret %d is empty: remove it or give a long random string", flagSecret, i+1)
		}
	}
	s.secrets = append([]string(nil), c.Auth.Secrets...)

	var err error

	if s.relayIP, s.relayIP6, err = parseRelayIPs(c.Relay.IP); err != nil {
		return settings{}, err
	}
	if c.Relay.DefaultFamily != "" {
		if s.defaultFamily, err = relay.ParseFamily(c.Relay.DefaultFamily); err != nil {
			return settings{}, fmt.Errorf("relay.default_family: %w", err)
		}
	}
	// relay.external_ip, relay.stun_servers and [admin] (opsconfig.go).
	if err := s.loadOperations(c); err != nil {
		return settings{}, err
	}
	if s.allowPeers, err = parsePrefixes(c.Relay.AllowPeers, "relay.allow_peers", flagAllowPeer); err != nil {
		return settings{}, err
	}
	if s.denyPeers, err = parsePrefixes(c.Relay.DenyPeers, "relay.deny_peers", flagDenyPeer); err != nil {
		return settings{}, err
	}

	// The settings declared in package config, where [limits] (their
	// first) used to be checked.
	if s.declared, err = config.Resolve(config.Settings(), c.Declared); err != nil {
		return settings{}, err
	}

	s.tlsCert, s.tlsKey = c.TLS.Cert, c.TLS.Key
	if (s.tlsCert == "") != (s.tlsKey == "") {
		return settings{}, fmt.Errorf("tls.cert (--%s) and tls.key (--%s): give both or neither (neither: a self-signed certificate)", flagTLSCert, flagTLSKey)
	}

	// [web] and the ACME keys first: the credentials API's HTTPS may use
	// the ACME certificate.
	if err := s.loadPort443(c); err != nil {
		return settings{}, err
	}
	if err := s.loadICE(c); err != nil {
		return settings{}, err
	}
	if err := s.checkSelftest(); err != nil {
		return settings{}, err
	}
	return s, nil
}

// loadUsers merges auth.users with the users file. A user defined twice is
// an error rather than a silent override: the two passwords disagree.
func (s *settings) loadUsers(a AuthConfig) error {
	s.users = make(map[string]string, len(a.Users))
	for name, password := range a.Users {
		if name == "" || strings.Contains(name, ":") {
			return fmt.Errorf("auth.users (--%s) %q: a user name must be non-empty and without ':'", flagUser, name)
		}
		if password == "" {
			return fmt.Errorf("auth.users (--%s) %s: empty password", flagUser, name)
		}
		s.users[name] = password
	}
	s.keys = map[string][]byte{}
	if a.UsersFile == "" {
		return nil
	}
	fileUsers, fileKeys, err := auth.LoadUsersFile(a.UsersFile)
	if err != nil {
		return fmt.Errorf("auth.users_file (--%s): %w", flagUsersFile, err)
	}
	for name := range maps.Keys(fileUsers) {
		if _, dup := s.users[name]; dup {
			return fmt.Errorf("auth.users_file (--%s) %s: user %s is also in auth.users (--%s): keep one", flagUsersFile, a.UsersFile, name, flagUser)
		}
	}
	for name := range maps.Keys(fileKeys) {
		if _, dup := s.users[name]; dup {
			return fmt.Errorf("auth.users_file (--%s) %s: user %s is also in auth.users (--%s): keep one", flagUsersFile, a.UsersFile, name, flagUser)
		}
	}
	maps.Copy(s.users, fileUsers)
	maps.Copy(s.keys, fileKeys)
	return nil
}

func isControlOrQuote(r rune) bool { return config.BadRealmRune(r) }

// positive returns d, def when d is zero, and an error when d is negative.
func positive(d Duration, def time.Duration, key, flag string) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("%s (--%s) %v: write a positive duration such as %q", key, flag, time.Duration(d), def.String())
	case d == 0:
		return def, nil
	}
	return time.Duration(d), nil
}

// parseHostIP parses an optional unicast address of this host (or of its
// NAT). IPv4-mapped IPv6 is unmapped so it compares equal to the IPv4 form.
func parseHostIP(v, key, flag string) (netip.Addr, error) {
	if v == "" {
		return netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s (--%s) %q: not an IP address: write e.g. 203.0.113.7 or 2001:db8::7", key, flag, v)
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() || ip.IsMulticast() || ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s (--%s) %s: write one unicast address, or leave it unset", key, flag, v)
	}
	return ip, nil
}

func parsePrefixes(vs []string, key, flag string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(vs))
	for _, v := range vs {
		p, err := auth.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("%s (--%s): %w", key, flag, err)
		}
		out = append(out, p)
	}
	return out, nil
}
