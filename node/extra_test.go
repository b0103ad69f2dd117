package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
)

// testSettings is a node on a loopback UDP port with no admin listener.
func testSettings(t *testing.T) config.Values {
	t.Helper()
	s, err := config.Resolve(config.Settings(), config.Values{
		"listen": []string{"udp://127.0.0.1:0"}, "auth.secrets": []string{"s"}, "admin.listen": "off",
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExtras: an extra starts once the relay serves and stops when Run
// returns; one that fails to start stops the node with its error.
func TestExtras(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	started, stopped := make(chan *relay.Server, 1), make(chan struct{})
	ok := func(_ context.Context, srv *relay.Server, _ config.Values, _ *slog.Logger) (func(), error) {
		started <- srv
		return func() { close(stopped) }, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Settings: testSettings(t), Log: log, Stdout: io.Discard, Extras: []Extra{ok}})
	}()
	select {
	case srv := <-started:
		if len(srv.Addrs()) != 1 {
			t.Errorf("extra started before the relay bound its listener: %v", srv.Addrs())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the extra was not started")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	select {
	case <-stopped:
	default:
		t.Error("the extra was not stopped")
	}

	boom := errors.New("boom")
	failing := func(context.Context, *relay.Server, config.Values, *slog.Logger) (func(), error) { return nil, boom }
	errc := make(chan error, 1)
	go func() {
		errc <- Run(t.Context(), Options{Settings: testSettings(t), Log: log, Stdout: io.Discard, Extras: []Extra{failing}})
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, boom) {
			t.Errorf("Run = %v, want the extra's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after a failing extra")
	}
}
