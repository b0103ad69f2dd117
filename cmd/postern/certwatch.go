package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// certQuiet is how long the certificate files must stay unchanged before
// they are read: a renewal writes the chain and the key one after the other.
const certQuiet = 500 * time.Millisecond

// watchCertFiles watches the directories of cert and key and sends on
// changed (without blocking) once either file has changed and then been
// quiet for certQuiet. It watches directories, not files, because certbot
// and most renewal tools replace files or re-point symlinks rather than
// writing in place. It returns when ctx is done.
func watchCertFiles(ctx context.Context, cert, key string, changed chan<- struct{}, log *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch certificate files: %w", err)
	}
	defer w.Close()
	names := map[string]bool{}
	for _, f := range []string{cert, key} {
		abs, err := filepath.Abs(f)
		if err != nil {
			return fmt.Errorf("watch %s: %w", f, err)
		}
		names[abs] = true
		if err := w.Add(filepath.Dir(abs)); err != nil {
			return fmt.Errorf("watch %s: %w", filepath.Dir(abs), err)
		}
	}
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if abs, _ := filepath.Abs(ev.Name); names[abs] {
				quiet.Reset(certQuiet)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("watching the certificate files", "err", err)
		case <-quiet.C:
			select {
			case changed <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}
}

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
