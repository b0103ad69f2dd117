package node

import (
	"time"

	"github.com/postern/postern/config"
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
	certFile, _ := config.TLSFiles(l.cur)
	attrs := []any{"cert", certFile}
	if c.Leaf != nil {
		attrs = append(attrs, "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	l.log.Info("certificate reloaded", attrs...)
}
