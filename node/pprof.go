package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// FlagPprof is the opt-in profiling listener's flag. It is a debugging aid
// for measuring the relay (BENCHMARKS.md), not configuration: it has no
// TOML key.
const FlagPprof = "pprof"

// StartPprof serves the runtime's profiles on addr, a loopback address,
// until ctx is done or stop is called, and returns the bound address. It
// uses its own mux and runtime/pprof directly, so nothing is registered on
// http.DefaultServeMux.
func StartPprof(ctx context.Context, addr string, log *slog.Logger) (bound net.Addr, stop func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--%s %q: %w (write HOST:PORT, e.g. 127.0.0.1:6060)", FlagPprof, addr, err)
	}
	if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
		return nil, nil, fmt.Errorf("--%s %q: profiles expose the server's internals: listen on a loopback address such as 127.0.0.1:6060", FlagPprof, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--%s %s: %w", FlagPprof, addr, err)
	}
	srv := &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof listener stopped", "err", err)
		}
	}()
	log.Info("pprof listening", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return ln.Addr(), func() { cancel(); <-done }, nil
}

// pprofMux serves /debug/pprof/profile?seconds=N (CPU) and
// /debug/pprof/NAME for every runtime/pprof profile (heap, allocs,
// goroutine, block, mutex, threadcreate), in the format go tool pprof reads.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/profile", func(w http.ResponseWriter, r *http.Request) {
		secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
		if err != nil || secs <= 0 {
			secs = 30
		}
		secs = min(secs, 300)
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := pprof.StartCPUProfile(w); err != nil {
			http.Error(w, err.Error(), http.StatusConflict) // another profile is running
			return
		}
		select {
		case <-time.After(time.Duration(secs) * time.Second):
		case <-r.Context().Done():
		}
		pprof.StopCPUProfile()
	})
	mux.HandleFunc("GET /debug/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		p := pprof.Lookup(r.PathValue("name"))
		if p == nil {
			http.NotFound(w, r)
			return
		}
		debug, _ := strconv.Atoi(r.URL.Query().Get("debug"))
		if debug > 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		} else {
			w.Header().Set("Content-Type", "application/octet-stream")
		}
		_ = p.WriteTo(w, debug)
	})
	mux.HandleFunc("GET /debug/pprof/{$}", func(w http.ResponseWriter, _ *http.Request) {
		var names []string
		for _, p := range pprof.Profiles() {
			names = append(names, p.Name())
		}
		fmt.Fprintf(w, "profiles: profile?seconds=N %s\n", strings.Join(names, " "))
	})
	return mux
}
