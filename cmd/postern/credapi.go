package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/postern/postern/iceapi"
)

// The credentials API's listener (package iceapi has the handler).
//
// HTTPS uses the certificate of the TURN listeners ([tls] cert and key):
// the API runs on the TURN host under the same DNS name, so there is one
// certificate to obtain and renew. A self-signed certificate is never used:
// every request carries an API key, and a client that cannot verify the
// server would hand its key to anyone in the path; browsers refuse it
// anyway. Plain HTTP is allowed only on a loopback address, for an
// application server on the same host or a reverse proxy that terminates
// TLS with its own certificate: there the key never crosses a network.
// settings enforces both rules (parseAPIListen, loadICE).

// API server timeouts: requests are tiny, so anything slow is a stuck or
// hostile client.
const (
	apiReadHeaderTimeout = 5 * time.Second
	apiReadTimeout       = 10 * time.Second
	apiWriteTimeout      = 10 * time.Second
	apiIdleTimeout       = time.Minute
	apiMaxHeaderBytes    = 16 << 10
	apiShutdownTimeout   = 5 * time.Second
)

// apiServer is the bound listener of the credentials API.
type apiServer struct {
	ln     net.Listener
	srv    *http.Server
	scheme string // http or https
	log    *slog.Logger
	// certs, once set by useCertificates, is where HTTPS takes its
	// certificate: the relay's, so reloads, file renewals and ACME apply
	// to the API too.
	certs atomic.Pointer[func(*tls.ClientHelloInfo) (*tls.Certificate, error)]
}

// listenAPI binds the credentials API's address, or returns nil when the API
// is off. Over HTTPS it serves the relay's certificate (useCertificates);
// settings has already refused HTTPS without one.
func listenAPI(a apiSettings, log *slog.Logger) (*apiServer, error) {
	if a.listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return nil, fmt.Errorf("credentials_api.listen (--%s) %s: %w: choose a free port or stop the process holding it", flagCredentialsAPI, a.listen, err)
	}
	s := &apiServer{
		ln:     ln,
		scheme: "http",
		log:    log,
		srv: &http.Server{
			ReadHeaderTimeout: apiReadHeaderTimeout,
			ReadTimeout:       apiReadTimeout,
			WriteTimeout:      apiWriteTimeout,
			IdleTimeout:       apiIdleTimeout,
			MaxHeaderBytes:    apiMaxHeaderBytes,
			// TLS handshake failures and the like: not worth more.
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}
	if !a.plain {
		s.scheme = "https"
		s.srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if get := s.certs.Load(); get != nil {
					return (*get)(hello)
				}
				return nil, errors.New("credentials API: the relay is not serving yet")
			},
		}
	}
	return s, nil
}

// useCertificates makes HTTPS take its certificate from get (the relay's
// GetCertificate). It is safe on nil.
func (s *apiServer) useCertificates(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) {
	if s != nil {
		s.certs.Store(&get)
	}
}

// close releases the listener of a server that never served. It is safe on
// nil and after serve.
func (s *apiServer) close() {
	if s != nil {
		_ = s.ln.Close()
	}
}

// serve answers requests with h until ctx is cancelled, then shuts down
// gracefully. The returned channel is closed once it has stopped; for a nil
// server it is closed already.
func (s *apiServer) serve(ctx context.Context, h http.Handler) <-chan struct{} {
	done := make(chan struct{})
	if s == nil {
		close(done)
		return done
	}
	s.srv.Handler = h
	s.log.Info("credentials API listening", "url", s.scheme+"://"+s.ln.Addr().String()+iceapi.Path)
	served := make(chan error, 1)
	go func() {
		if s.srv.TLSConfig != nil {
			served <- s.srv.ServeTLS(s.ln, "", "")
		} else {
			served <- s.srv.Serve(s.ln)
		}
	}()
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
		case err := <-served:
			// The relay keeps running without the API.
			s.log.Error("credentials API stopped", "err", err)
			return
		}
		shutdown, cancel := context.WithTimeout(context.Background(), apiShutdownTimeout)
		defer cancel()
		if err := s.srv.Shutdown(shutdown); err != nil {
			_ = s.srv.Close()
		}
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("credentials API", "err", err)
		}
	}()
	return done
}
