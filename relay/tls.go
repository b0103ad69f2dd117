package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"time"

	"github.com/postern/postern/relay/sniff"
)

// ALPN protocol IDs (package sniff routes connections by them).
const (
	alpnTURN  = sniff.ALPNTURN  // TURN over TLS (RFC 7443)
	alpnACME  = sniff.ALPNACME  // the TLS-ALPN-01 challenge (RFC 8737)
	alpnHTTP1 = sniff.ALPNHTTP1 // HTTP/1.1 (RFC 7301)
)

// tlsConfig builds the TLS configuration of the TLS listeners, generating a
// self-signed certificate when none is configured.
func (s *Server) tlsConfig() (*tls.Config, error) {
	if !s.hasTLSListener() && s.cfg.TLSCert == nil {
		return nil, nil
	}
	var cert tls.Certificate
	switch {
	case s.cfg.TLSCert != nil:
		cert = *s.cfg.TLSCert // copied: SetCertificate replaces, never mutates
	default:
		c, err := SelfSignedCertificate()
		if err != nil {
			return nil, err
		}
		cert = c
		if s.cfg.ACME == nil {
			s.log.Warn("no TLS certificate configured: using a self-signed one; browsers and most TURN clients will reject TLS until you set --tls-cert and --tls-key, or [tls] acme")
		}
	}
	s.cert.Store(&cert)
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Through GetCertificate, an ACME renewal is served from the next
		// handshake on; sessions already established keep theirs.
		GetCertificate: s.GetCertificate,
	}
	conf := base.Clone()
	// ALPN is chosen per client: Go rejects a handshake whose ALPN list
	// shares nothing with ours, and most TURN clients send no ALPN at all.
	conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		has := func(p string) bool { return slices.Contains(hello.SupportedProtos, p) }
		switch m := s.acme.Load(); {
		case has(alpnACME) && m != nil:
			// RFC 8737 §3: answer with the challenge certificate and
			// ALPN acme-tls/1; certmagic's GetCertificate knows it.
			c := base.Clone()
			c.NextProtos = []string{alpnACME}
			c.GetCertificate = m.magic.GetCertificate
			return c, nil
		case has(alpnTURN):
			// RFC 7443 §3: TURN over TLS is "stun.turn".
			c := base.Clone()
			c.NextProtos = []string{alpnTURN}
			return c, nil
		case has(alpnHTTP1):
			// A browser headed for the built-in page.
			c := base.Clone()
			c.NextProtos = []string{alpnHTTP1}
			return c, nil
		}
		return nil, nil
	}
	return conf, nil
}

// GetCertificate returns the certificate for a TLS handshake: ACME's for
// its domains when ACME is on, else the configured (or self-signed) one. It
// fits tls.Config.GetCertificate, so other TLS servers of the process (the
// credentials API) serve what the TURN listeners serve.
func (s *Server) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m := s.acme.Load(); m != nil {
		if c, err := m.magic.GetCertificate(hello); err == nil {
			return c, nil
		}
	}
	if c := s.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("relay: no TLS certificate: configure tls.cert and tls.key, or tls.acme")
}

// SetCertificate replaces the certificate of the TLS listeners (a reload,
// or a renewal written to the certificate files) from the next handshake
// on; established sessions keep theirs. With ACME on, certificates ACME
// manages take precedence.
func (s *Server) SetCertificate(cert *tls.Certificate) {
	if cert != nil {
		s.cert.Store(cert)
	}
}

func (s *Server) hasTLSListener() bool {
	for _, l := range s.cfg.Listeners {
		if l.Kind == TLS || l.Kind == TCPTLS {
			return true
		}
	}
	return false
}

// SelfSignedCertificate makes an in-memory ECDSA certificate for localhost,
// the loopback addresses and the host name, valid for a year.
func SelfSignedCertificate() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	names := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		names = append(names, h)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "postern self-signed", Organization: []string{"Postern"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
