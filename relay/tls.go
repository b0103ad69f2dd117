package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"time"
)

// alpnTURN is the ALPN protocol ID for TURN over TLS (RFC 7443).
const alpnTURN = "stun.turn"

// tlsConfig builds the TLS configuration of the TLS listeners, generating a
// self-signed certificate when none is configured.
func (s *Server) tlsConfig() (*tls.Config, error) {
	var cert tls.Certificate
	if s.cfg.TLSCert != nil {
		cert = *s.cfg.TLSCert
	} else {
		if !s.hasTLSListener() {
			return nil, nil
		}
		c, err := SelfSignedCertificate()
		if err != nil {
			return nil, err
		}
		cert = c
		s.log.Warn("no TLS certificate configured: using a self-signed one; browsers and most TURN clients will reject TLS until you set --tls-cert and --tls-key")
	}
	base := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	conf := base.Clone()
	// Offer ALPN "stun.turn" (RFC 7443) only to clients that ask for it: Go
	// rejects a handshake whose ALPN list shares nothing with ours, and most
	// TURN clients send no ALPN at all.
	conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if slices.Contains(hello.SupportedProtos, alpnTURN) {
			c := base.Clone()
			c.NextProtos = []string{alpnTURN}
			return c, nil
		}
		return nil, nil
	}
	return conf, nil
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
