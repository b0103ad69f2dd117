package relay

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/postern/postern/relay/sniff"
)

// ACMEConfig obtains the TLS certificate from an ACME CA (Let's Encrypt by
// default) and renews it in the background. The CA proves control of each
// domain with the TLS-ALPN-01 challenge (RFC 8737), which Postern answers on
// its own TLS listener on port 443: no port 80, no web server, no DNS API.
type ACMEConfig struct {
	// Domains are the DNS names of the certificate; each must resolve to
	// this host, which must be reachable from the CA on TCP port 443.
	Domains []string
	// CA is the ACME directory URL; Let's Encrypt's production CA when empty.
	CA string
	// Email is the ACME account's contact, for expiry warnings; optional.
	Email string
	// Storage is the directory that keeps the account key, certificates
	// and their keys across restarts. Required: without it every restart
	// would issue anew and soon hit the CA's rate limits.
	Storage string
	// RootCAs verify the CA's HTTPS API; nil means the system roots (a
	// private or test CA such as Pebble needs its root here).
	RootCAs *x509.CertPool

	// Test knobs: how often the background maintenance looks for
	// certificates to renew, which fraction of a certificate's lifetime is
	// its renewal window, and whether ACME Renewal Info is ignored.
	renewCheckInterval time.Duration
	renewalWindowRatio float64
	disableARI         bool
}

// DefaultACMECA is the ACME directory used when ACMEConfig.CA is empty.
const DefaultACMECA = certmagic.LetsEncryptProductionCA

// acmeManager holds certmagic's state for one server.
type acmeManager struct {
	cache *certmagic.Cache
	magic *certmagic.Config
	stop  context.CancelFunc // ends obtain and renew attempts in progress
}

// startACME starts managing the certificates of s.cfg.ACME, once the
// listeners are bound (the challenge is answered on one of them). The
// first certificate is obtained in the background: until it arrives,
// handshakes get the configured or self-signed certificate.
func (s *Server) startACME() error {
	ac := s.cfg.ACME
	if ac == nil {
		return nil
	}
	if len(ac.Domains) == 0 {
		return errors.New("relay: ACME needs at least one domain")
	}
	if ac.Storage == "" {
		return errors.New("relay: ACME needs a storage directory for its account and certificates")
	}
	host, port, ok := s.acmeListener()
	if !ok {
		return errors.New("relay: ACME answers the CA's TLS-ALPN-01 challenge on a tls:// or tcp+tls:// listener on port 443: add one (e.g. tcp+tls://:443)")
	}
	if port != 443 {
		s.log.Warn("ACME: no TLS listener on port 443; the CA validates on port 443, so it must be forwarded to this one",
			"listener_port", port)
	}

	logger := zap.New(slogCore{log: s.log.With("component", "acme"), level: zapcore.InfoLevel})
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		RenewCheckInterval: ac.renewCheckInterval,
		Logger:             logger,
	})
	magic = certmagic.New(cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: ac.Storage},
		// TURN clients often dial an IP address and send no SNI: give
		// them the certificate of the first domain.
		DefaultServerName:  sniff.NormalizeHost(ac.Domains[0]),
		RenewalWindowRatio: ac.renewalWindowRatio,
		DisableARI:         ac.disableARI,
		// Let's Encrypt ended OCSP in 2025, and TURN clients do not ask
		// for staples: fetching them would only log failures.
		OCSP:   certmagic.OCSPConfig{DisableStapling: true},
		Logger: logger,
	})
	magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                   cmpOr(ac.CA, DefaultACMECA),
		Email:                ac.Email,
		Agreed:               true,
		DisableHTTPChallenge: true, // nothing of ours listens on port 80
		// certmagic tries to bind its own challenge server here; finding
		// our listener on the port, it leaves the challenge to us (our
		// handshake hands acme-tls/1 to magic.GetCertificate).
		ListenHost:     host,
		AltTLSALPNPort: port,
		TrustedRoots:   ac.RootCAs,
		Logger:         logger,
	})}

	ctx, cancel := context.WithCancel(context.Background())
	if err := magic.ManageAsync(ctx, ac.Domains); err != nil {
		cancel()
		cache.Stop()
		return fmt.Errorf("relay: ACME for %v: %w", ac.Domains, err)
	}
	s.acme.Store(&acmeManager{cache: cache, magic: magic, stop: cancel})
	s.log.Info("ACME: managing certificates in the background", "domains", ac.Domains,
		"ca", cmpOr(ac.CA, DefaultACMECA), "storage", ac.Storage)
	return nil
}

// stopACME ends certificate maintenance.
func (s *Server) stopACME() {
	if m := s.acme.Swap(nil); m != nil {
		m.stop()
		m.cache.Stop()
	}
}

// acmeListener picks the bound TLS listener that answers TLS-ALPN-01: the
// one on port 443 if any, else the first.
func (s *Server) acmeListener() (host string, port int, ok bool) {
	s.mu.Lock()
	bound := slices.Clone(s.bound)
	s.mu.Unlock()
	for _, b := range bound {
		if b.Kind != TLS && b.Kind != TCPTLS {
			continue
		}
		ap := tcpAddrPort(b.Addr)
		h := ""
		if ap.Addr().IsValid() && !ap.Addr().IsUnspecified() {
			h = ap.Addr().String()
		}
		if !ok || ap.Port() == 443 {
			host, port, ok = h, int(ap.Port()), true
		}
		if ap.Port() == 443 {
			break
		}
	}
	return host, port, ok
}

// ACMEIdentifier reports whether name can be put in a public ACME
// certificate (a DNS name, not an IP address or a bare host name).
func ACMEIdentifier(name string) error {
	if name == "" {
		return errors.New("empty domain")
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("%q is an IP address: ACME here issues for DNS names; use --tls-cert for an IP certificate", name)
	}
	if !certmagic.SubjectQualifiesForCert(name) {
		return fmt.Errorf("%q is not a valid certificate name", name)
	}
	if _, _, err := net.SplitHostPort(name); err == nil {
		return fmt.Errorf("%q has a port: write the bare name", name)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// slogCore sends certmagic's zap logs to the server's slog logger.
type slogCore struct {
	log   *slog.Logger
	level zapcore.Level
	attrs []any
}

func (c slogCore) Enabled(l zapcore.Level) bool { return l >= c.level }

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	c.attrs = append(slices.Clip(c.attrs), fieldAttrs(fields)...)
	return c
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := slog.LevelInfo
	switch {
	case e.Level <= zapcore.DebugLevel:
		level = slog.LevelDebug
	case e.Level == zapcore.WarnLevel:
		level = slog.LevelWarn
	case e.Level >= zapcore.ErrorLevel:
		level = slog.LevelError
	}
	args := append(slices.Clip(c.attrs), fieldAttrs(fields)...)
	if e.LoggerName != "" {
		args = append(args, "logger", e.LoggerName)
	}
	c.log.Log(context.Background(), level, e.Message, args...)
	return nil
}

func (slogCore) Sync() error { return nil }

// fieldAttrs turns zap fields into slog key-value pairs.
func fieldAttrs(fields []zapcore.Field) []any {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]any, 0, 2*len(enc.Fields))
	for _, f := range fields { // in the order given, not the map's
		if v, ok := enc.Fields[f.Key]; ok {
			out = append(out, f.Key, v)
		}
	}
	return out
}
