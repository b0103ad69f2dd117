package main

import (
	"crypto/tls"
	"fmt"
	"time"
)

// Certificate files given with tls.cert and tls.key are watched
// (certwatch.Watch, started by serve) and read again after a renewal.

// reloadCertificate reads the configured certificate files again and puts
// them in force for new TLS handshakes; on error the old one stays.
func (l *live) reloadCertificate() {
	c, err := loadCertificate(l.cur)
	if err != nil {
		l.log.Error("certificate files changed but cannot be loaded: the previous certificate stays in force", "err", err)
		return
	}
	if c == nil {
		return
	}
	l.srv.SetCertificate(c)
	attrs := []any{"cert", l.cur.tlsCert}
	if c.Leaf != nil {
		attrs = append(attrs, "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	l.log.Info("certificate reloaded", attrs...)
}

// loadCertificate reads the certificate files s configures, or returns nil
// when it configures none (self-signed or ACME).
func loadCertificate(s settings) (*tls.Certificate, error) {
	if s.tlsCert == "" {
		return nil, nil
	}
	c, err := tls.LoadX509KeyPair(s.tlsCert, s.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("tls.cert (--%s) / tls.key (--%s): %w", flagTLSCert, flagTLSKey, err)
	}
	return &c, nil
}
