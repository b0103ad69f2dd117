package main

import (
	"cmp"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/relay"
)

// WebConfig is the [web] table: sharing the TLS listeners (port 443) with a
// web site on the same host.
type WebConfig struct {
	// TURNHosts are the TLS server names (SNI) of the TURN service; a TLS
	// client asking for another name goes to the backend. The other [web]
	// keys are declared in package config.
	TURNHosts []string `toml:"turn_hosts"`
}

// Flags of port 443 sharing, PROXY protocol and ACME, and their --help
// categories.
const (
	flagTURNHost         = "turn-host"
	flagProxyProtocolFor = "proxy-protocol-from"
	flagACME             = "acme"
	flagACMEDomain       = "acme-domain"
	flagACMECA           = "acme-ca"
	flagACMEEmail        = "acme-email"
	flagACMEStorage      = "acme-storage"
	flagACMECARoot       = "acme-ca-root"

	catWeb = "Sharing port 443"
)

// defaultACMECA is the ACME directory when tls.acme_ca is empty.
const defaultACMECA = relay.DefaultACMECA

// port443Flags returns fresh flags for the [web] table,
// proxy_protocol_from and the ACME keys of [tls].
func port443Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: flagTURNHost, Category: catWeb,
			Usage:       "TLS server name `NAME` of the TURN service; TLS for other names goes to --web-backend (replaces the file's list)",
			DefaultText: "every name; with ACME, the ACME domains"},
		&cli.StringSliceFlag{Name: flagProxyProtocolFor, Category: catListen,
			Usage: "accept PROXY protocol v1/v2 headers on TCP and TLS listeners from `CIDR` (your load balancer); from others they close the connection"},
		&cli.BoolFlag{Name: flagACME, Category: catTLS,
			Usage: "obtain and renew the certificate automatically over ACME (TLS-ALPN-01 on port 443)"},
		&cli.StringSliceFlag{Name: flagACMEDomain, Category: catTLS,
			Usage: "DNS `NAME` of the ACME certificate (repeatable; replaces the file's list)"},
		&cli.StringFlag{Name: flagACMECA, Category: catTLS,
			Usage: "ACME directory `URL`", DefaultText: defaultACMECA},
		&cli.StringFlag{Name: flagACMEEmail, Category: catTLS,
			Usage: "contact `EMAIL` of the ACME account (expiry warnings)"},
		&cli.StringFlag{Name: flagACMEStorage, Category: catTLS, TakesFile: true,
			Usage:       "`DIR` keeping the ACME account and certificates",
			DefaultText: "$STATE_DIRECTORY/acme, else $XDG_DATA_HOME/postern/acme, else ~/.local/share/postern/acme"},
		&cli.StringFlag{Name: flagACMECARoot, Category: catTLS, TakesFile: true,
			Usage: "trust the PEM root certificate(s) in `FILE` for the ACME CA's HTTPS API (private or test CAs)"},
	}
}

// applyPort443Flags overrides c with the flags of port443Flags.
func (c *Config) applyPort443Flags(cmd *cli.Command) {
	override(cmd, flagTURNHost, &c.Web.TURNHosts, cmd.StringSlice)
	override(cmd, flagProxyProtocolFor, &c.ProxyProtocolFrom, cmd.StringSlice)
	override(cmd, flagACME, &c.TLS.ACME, cmd.Bool)
	override(cmd, flagACMEDomain, &c.TLS.Domains, cmd.StringSlice)
	override(cmd, flagACMECA, &c.TLS.ACMECA, cmd.String)
	override(cmd, flagACMEEmail, &c.TLS.ACMEEmail, cmd.String)
	override(cmd, flagACMEStorage, &c.TLS.ACMEStorage, cmd.String)
	override(cmd, flagACMECARoot, &c.TLS.ACMECARoot, cmd.String)
}

// port443Settings is the validated [web] table, proxy_protocol_from and
// the ACME keys of [tls].
type port443Settings struct {
	web       relay.WebConfig
	proxyFrom []netip.Prefix

	acme        bool
	domains     []string // normalized
	acmeCA      string
	acmeEmail   string
	acmeStorage string // "" until resolved at start (it depends on the environment)
	acmeCARoot  string
}

// loadPort443 validates the settings of port443Settings.
func (s *settings) loadPort443(c Config) error {
	p := &s.port443
	w := c.Web
	// web.backend, backend_proxy_protocol, idle_timeout and max_conns are
	// declared in package config (config.Settings).
	for _, h := range w.TURNHosts {
		name, err := hostName(h)
		if err != nil {
			return fmt.Errorf("web.turn_hosts (--%s): %w", flagTURNHost, err)
		}
		p.web.TURNHosts = append(p.web.TURNHosts, name)
	}

	if len(c.ProxyProtocolFrom) > 0 {
		var err error
		if p.proxyFrom, err = parsePrefixes(c.ProxyProtocolFrom, "proxy_protocol_from", flagProxyProtocolFor); err != nil {
			return err
		}
	}
	for _, pf := range p.proxyFrom {
		if pf.Bits() == 0 {
			return fmt.Errorf("proxy_protocol_from (--%s) %s trusts every address, so any client could claim any address: name your load balancers' addresses", flagProxyProtocolFor, pf)
		}
	}

	t := c.TLS
	if !t.ACME {
		// The other ACME keys mean nothing then; domains would be a
		// forgotten switch.
		if len(t.Domains) > 0 {
			return fmt.Errorf("tls.domains (--%s) is set but tls.acme (--%s) is off: set acme = true to get certificates for them, or remove them", flagACMEDomain, flagACME)
		}
		return nil
	}
	p.acme = true
	p.acmeCA = cmp.Or(t.ACMECA, defaultACMECA)
	p.acmeEmail, p.acmeStorage, p.acmeCARoot = t.ACMEEmail, t.ACMEStorage, t.ACMECARoot
	if s.tlsCert != "" {
		return fmt.Errorf("tls.acme (--%s) and tls.cert (--%s): choose one way to get the certificate", flagACME, flagTLSCert)
	}
	if len(t.Domains) == 0 {
		return fmt.Errorf("tls.acme (--%s) is on but tls.domains (--%s) is empty: list the DNS names of this server, e.g. domains = [\"turn.example.org\"]", flagACME, flagACMEDomain)
	}
	for _, d := range t.Domains {
		name, err := hostName(d)
		if err == nil {
			err = relay.ACMEIdentifier(name)
		}
		if err != nil {
			return fmt.Errorf("tls.domains (--%s): %w", flagACMEDomain, err)
		}
		p.domains = append(p.domains, name)
	}
	if !strings.HasPrefix(p.acmeCA, "https://") {
		return fmt.Errorf("tls.acme_ca (--%s) %q: write the https:// URL of the CA's ACME directory", flagACMECA, p.acmeCA)
	}
	return nil
}

// hostName checks a DNS name written in the configuration and returns it
// in lower case without a trailing dot.
func hostName(v string) (string, error) {
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

// acmeConfig returns the relay's ACME configuration, reading the CA root
// file and resolving the storage directory; nil when ACME is off.
func (p port443Settings) acmeConfig() (*relay.ACMEConfig, error) {
	if !p.acme {
		return nil, nil
	}
	storage := p.acmeStorage
	if storage == "" {
		var err error
		if storage, err = defaultACMEStorage(); err != nil {
			return nil, fmt.Errorf("tls.acme_storage (--%s): %w", flagACMEStorage, err)
		}
	}
	if err := os.MkdirAll(storage, 0o700); err != nil {
		return nil, fmt.Errorf("tls.acme_storage (--%s): %w: create it, writable by the postern user only", flagACMEStorage, err)
	}
	conf := &relay.ACMEConfig{Domains: p.domains, CA: p.acmeCA, Email: p.acmeEmail, Storage: storage}
	if p.acmeCARoot != "" {
		pem, err := os.ReadFile(p.acmeCARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.acme_ca_root (--%s): %w", flagACMECARoot, err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme_ca_root (--%s) %s: no PEM certificate in the file", flagACMECARoot, p.acmeCARoot)
		}
	}
	return conf, nil
}

// defaultACMEStorage is where ACME state lives when tls.acme_storage is
// empty: systemd's StateDirectory, else the XDG data directory.
func defaultACMEStorage() (string, error) {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		// systemd may list several, separated by colons: use the first.
		return filepath.Join(strings.Split(d, ":")[0], "acme"), nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "postern", "acme"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory to keep ACME state in: %w (set acme_storage)", err)
	}
	return filepath.Join(home, ".local", "share", "postern", "acme"), nil
}
