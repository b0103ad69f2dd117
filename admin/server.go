package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is where the admin listener binds unless told otherwise:
// loopback only, so that sessions and metrics are not exposed by accident.
const DefaultAddr = "127.0.0.1:9641"

// Config configures an admin Server.
type Config struct {
	// Addr is the HOST:PORT to listen on; DefaultAddr when empty.
	Addr string
	// Token, when set, is the bearer token /metrics and /api/ require.
	Token string
	// Relay is the server to report on and act upon (a *relay.Server).
	// Required.
	Relay Relay
	// Version is reported in postern_build_info.
	Version string
	// Fleet, when set, is the fleet this node belongs to: its name and
	// region label postern_node_info, and sessions carry the node name.
	Fleet Fleet
	// Logger receives the admin listener's logs; slog.Default() when nil.
	Logger *slog.Logger
}

// Server is the admin HTTP listener. Create it with New, bind and serve
// with Start, stop it by cancelling Start's context.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	http    *http.Server
	ln      net.Listener
	done    chan struct{} // closed when serving has ended
	meter   rateMeter     // the dashboard's bit rate, shared by its viewers
}

// shutdownTimeout bounds how long in-flight admin requests may finish
// after the context is cancelled.
const shutdownTimeout = 5 * time.Second

// New checks cfg and builds the handler; nothing is bound yet.
func New(cfg Config) (*Server, error) {
	if cfg.Relay == nil {
		return nil, errors.New("admin: Config.Relay is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(newCollector(cfg.Relay, cfg.Fleet, cfg.Version)); err != nil {
		return nil, fmt.Errorf("admin: registering the postern collector: %w", err)
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("admin: registering the Go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("admin: registering the process collector: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, done: make(chan struct{})}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.root)
	mux.HandleFunc("POST /{$}", s.login)
	mux.HandleFunc("GET /help", s.index)
	mux.Handle("GET /api/dashboard", s.dashboardAuthorized(http.HandlerFunc(s.apiDashboard)))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.authorized(promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slogAdapter{cfg.Logger},
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})))
	mux.Handle("GET /api/sessions", s.authorized(http.HandlerFunc(s.listSessions)))
	mux.Handle("DELETE /api/sessions", s.authorized(http.HandlerFunc(s.kickUser)))
	mux.Handle("DELETE /api/sessions/{id}", s.authorized(http.HandlerFunc(s.kickID)))
	for _, m := range []string{"GET", "POST", "DELETE"} {
		mux.Handle(m+" /api/drain", s.authorized(http.HandlerFunc(s.drain)))
	}
	s.handler = mux
	return s, nil
}

// Handler returns the admin HTTP handler (for tests, or to mount elsewhere).
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds Config.Addr and serves until ctx is cancelled; then it stops
// accepting, lets requests in flight finish (up to 5 s) and closes Done.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin listener %s: %w: choose another address with --admin (or admin.listen), or \"off\" to disable it", s.cfg.Addr, err)
	}
	s.ln = ln
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener failed", "addr", ln.Addr().String(), "err", err)
		}
	}()
	go func() {
		defer close(s.done)
		select {
		case <-ctx.Done():
		case <-served:
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = s.http.Shutdown(sctx)
		<-served
	}()
	if s.cfg.Token == "" && !isLoopback(ln.Addr()) {
		s.log.Warn("the admin listener is reachable from other hosts without a token: set admin.token (or --admin-token) or listen on 127.0.0.1",
			"addr", ln.Addr().String())
	}
	s.log.Info("admin listening", "addr", ln.Addr().String(), "token", s.cfg.Token != "")
	return nil
}

// Addr returns the bound address; nil before Start.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Done returns a channel closed once the listener has stopped serving
// after Start's context was cancelled.
func (s *Server) Done() <-chan struct{} { return s.done }

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// authorized wraps h with the bearer-token check when a token is set
// (RFC 6750 §2.1; 401 with WWW-Authenticate otherwise).
func (s *Server) authorized(h http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return h
	}
	want := []byte("Bearer " + s.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="postern admin"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token: send \"Authorization: Bearer TOKEN\" with the admin.token of the server")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprint(w, "postern admin\n\n"+
		"GET    /                        this index; in a browser (Accept: text/html) the dashboard\n"+
		"GET    /?token=TOKEN            sign a browser in to the dashboard (a cookie), then redirect to /\n"+
		"GET    /help                    this index\n"+
		"GET    /api/dashboard           what the dashboard shows (JSON)\n"+
		"GET    /metrics                 Prometheus metrics\n"+
		"GET    /healthz                 liveness\n"+
		"GET    /readyz                  readiness (503 while starting, draining or stopping)\n"+
		"GET    /api/sessions[?user=U]   live allocations (JSON)\n"+
		"DELETE /api/sessions/ID         end one allocation\n"+
		"DELETE /api/sessions?user=U     end every allocation of a user\n"+
		"POST   /api/drain               start draining (new allocations refused)\n"+
		"DELETE /api/drain               stop draining\n")
}

// healthz answers 200 while the process serves HTTP at all: a liveness
// probe that fails only when the process is wedged or gone.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprintln(w, "ok")
}

// readyz answers 200 "ready" once the relay's listeners are bound, and 503
// with the state ("starting", "draining", "stopping") otherwise.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.cfg.Relay.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = fmt.Fprintln(w, s.cfg.Relay.State())
}

// slogAdapter lets promhttp log through slog.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Println(v ...any) {
	a.log.Error("metrics", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}
