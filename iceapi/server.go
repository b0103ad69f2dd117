package iceapi

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Server timeouts: requests are tiny, so anything slow is a stuck or
// hostile client.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = time.Minute
	maxHeaderBytes    = 16 << 10
	shutdownTimeout   = 5 * time.Second
)

// Server is the bound listener of the credentials API.
//
// HTTPS takes the certificate of the TURN listeners (UseCertificates): the
// API runs on the TURN host under the same DNS name, so there is one
// certificate to obtain and renew, and reloads, file renewals and ACME
// apply to the API too. A self-signed certificate is never used: every
// request carries an API key, and a client that cannot verify the server
// would hand its key to anyone in the path; browsers refuse it anyway.
// Plain HTTP belongs on a loopback address only, for an application server
// on the same host or a reverse proxy that terminates TLS with its own
// certificate: there the key never crosses a network. The caller enforces
// both rules when it validates its settings.
//
// All methods are safe on a nil *Server (the API is off).
type Server struct {
	ln     net.Listener
	srv    *http.Server
	scheme string // http or https
	log    *slog.Logger
	// certs, once set by UseCertificates, is where HTTPS takes its
	// certificate.
	certs atomic.Pointer[func(*tls.ClientHelloInfo) (*tls.Certificate, error)]
}

// Listen binds addr (HOST:PORT) for the API, over plain HTTP when plain is
// set, else over HTTPS with the certificates given later to
// UseCertificates. Binding first, before anything serves, makes a busy port
// fail the start.
func Listen(addr string, plain bool, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		ln:     ln,
		scheme: "http",
		log:    log,
		srv: &http.Server{
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			// TLS handshake failures and the like: not worth more.
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}
	if !plain {
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

// UseCertificates makes HTTPS take its certificate from get (the relay's
// GetCertificate).
func (s *Server) UseCertificates(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) {
	if s != nil {
		s.certs.Store(&get)
	}
}

// Close releases the listener of a server that never served. It is safe
// after Serve.
func (s *Server) Close() {
	if s != nil {
		_ = s.ln.Close()
	}
}

// Serve answers requests with h until ctx is cancelled, then shuts down
// gracefully. The returned channel is closed once it has stopped; for a nil
// server it is closed already. If serving fails, the error is logged and
// the caller (the relay) keeps running without the API.
func (s *Server) Serve(ctx context.Context, h http.Handler) <-chan struct{} {
	done := make(chan struct{})
	if s == nil {
		close(done)
		return done
	}
	s.srv.Handler = h
	s.log.Info("credentials API listening", "url", s.scheme+"://"+s.ln.Addr().String()+Path)
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
			s.log.Error("credentials API stopped", "err", err)
			return
		}
		shutdown, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
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
