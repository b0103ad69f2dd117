package node

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/postern/postern/relay"
)

// The SIGUSR1 / SIGTERM drain sequence; drain.timeout is declared in
// package config.

// drainer is the part of relay.Server the drain sequence uses.
type drainer interface {
	SetDraining(bool)
	Draining() bool
	Stats() relay.Stats
}

// drainContext returns the context the relay should run under: SIGUSR1
// starts a drain (no new allocations, existing ones run on), and when
// parent ends (SIGTERM, SIGINT) during a drain, the returned context ends
// only once the last allocation has gone or timeout has passed. Without a
// drain it ends with parent.
func drainContext(parent context.Context, srv drainer, timeout time.Duration, log *slog.Logger) context.Context {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	return drainOn(parent, srv, timeout, log, usr1, func() { signal.Stop(usr1) })
}

// drainOn is drainContext with the drain trigger as a channel, for tests.
func drainOn(parent context.Context, srv drainer, timeout time.Duration, log *slog.Logger, trigger <-chan os.Signal, stop func()) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		defer stop()
		for {
			select {
			case <-trigger:
				if !srv.Draining() {
					srv.SetDraining(true)
					log.Info("draining: new allocations are refused, existing ones run to their end; SIGTERM stops once they have",
						"allocations", srv.Stats().AllocationsActive)
				}
				continue
			case <-parent.Done():
			}
			break
		}
		if !srv.Draining() {
			return
		}
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		log.Info("stopping after the drain", "allocations", srv.Stats().AllocationsActive, "timeout", timeout)
		for srv.Stats().AllocationsActive > 0 {
			select {
			case <-deadline.C:
				log.Warn("drain timeout: stopping with allocations left", "allocations", srv.Stats().AllocationsActive)
				return
			case <-tick.C:
			}
		}
	}()
	return ctx
}
