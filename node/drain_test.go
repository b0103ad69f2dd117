package node

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/relay"
)

// fakeDrainer stands in for relay.Server in the drain sequence.
type fakeDrainer struct {
	draining atomic.Bool
	active   atomic.Int64
}

func (f *fakeDrainer) SetDraining(d bool) { f.draining.Store(d) }
func (f *fakeDrainer) Draining() bool     { return f.draining.Load() }
func (f *fakeDrainer) Stats() relay.Stats {
	return relay.Stats{AllocationsActive: int(f.active.Load())}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestDrainSequence(t *testing.T) {
	ended := func(ctx context.Context, within time.Duration) bool {
		select {
		case <-ctx.Done():
			return true
		case <-time.After(within):
			return false
		}
	}
	t.Run("no drain: stops with the parent", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		ctx := drainOn(parent, &fakeDrainer{}, time.Hour, quietLog(), make(chan os.Signal), func() {})
		cancel()
		if !ended(ctx, time.Second) {
			t.Fatal("relay context outlived SIGTERM without a drain")
		}
	})
	t.Run("drain: waits for the last allocation", func(t *testing.T) {
		f := &fakeDrainer{}
		f.active.Store(2)
		trigger := make(chan os.Signal, 1)
		parent, cancel := context.WithCancel(context.Background())
		ctx := drainOn(parent, f, time.Hour, quietLog(), trigger, func() {})
		trigger <- syscall.SIGUSR1
		deadline := time.Now().Add(time.Second)
		for !f.Draining() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if !f.Draining() {
			t.Fatal("SIGUSR1 did not start a drain")
		}
		cancel() // SIGTERM
		if ended(ctx, 500*time.Millisecond) {
			t.Fatal("relay stopped with allocations left during a drain")
		}
		f.active.Store(0)
		if !ended(ctx, 2*time.Second) {
			t.Fatal("relay did not stop once the last allocation ended")
		}
	})
	t.Run("drain: timeout", func(t *testing.T) {
		f := &fakeDrainer{}
		f.active.Store(1)
		f.SetDraining(true)
		parent, cancel := context.WithCancel(context.Background())
		ctx := drainOn(parent, f, 300*time.Millisecond, quietLog(), make(chan os.Signal), func() {})
		cancel()
		if !ended(ctx, 2*time.Second) {
			t.Fatal("drain timeout did not stop the relay")
		}
	})
}
