package certwatch

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatch: replacing a watched file through a rename (as renewal tools
// do) signals once after Quiet; writing another file in the directory does
// not; cancelling the context ends Watch.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	cert, key, other := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "other")
	for _, f := range []string{cert, key} {
		if err := os.WriteFile(f, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, changed, slog.New(slog.NewTextHandler(io.Discard, nil)), cert, key) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after its context was cancelled")
		}
	}()
	time.Sleep(100 * time.Millisecond) // let the watch be set up

	if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Fatal("a change to another file was signalled")
	case <-time.After(Quiet + 300*time.Millisecond):
	}

	start := time.Now()
	for _, f := range []string{key, cert} {
		if err := os.WriteFile(f+".tmp", []byte("new"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f+".tmp", f); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-changed:
		if d := time.Since(start); d < Quiet {
			t.Errorf("signalled after %v, before the files were quiet for %v", d, Quiet)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the renewal was not signalled")
	}
	select {
	case <-changed:
		t.Error("one renewal was signalled twice")
	case <-time.After(Quiet + 300*time.Millisecond):
	}
}

// TestWatchMissingDirectory: a file in a directory that does not exist
// cannot be watched: Watch says so at once.
func TestWatchMissingDirectory(t *testing.T) {
	err := Watch(context.Background(), make(chan struct{}, 1), slog.New(slog.NewTextHandler(io.Discard, nil)),
		filepath.Join(t.TempDir(), "nope", "cert.pem"))
	if err == nil {
		t.Fatal("Watch of a missing directory succeeded")
	}
}

// TestStartWatchesAtOnce: a file replaced right after Start returns is
// signalled (no time to set up after it), and done closes with ctx.
func TestStartWatchesAtOnce(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(cert, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 1)
	done, err := Start(ctx, changed, slog.New(slog.NewTextHandler(io.Discard, nil)), cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert+".tmp", []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cert+".tmp", cert); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("a change right after Start was not signalled")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("done was not closed after the context ended")
	}
	if _, err := Start(context.Background(), changed, slog.New(slog.NewTextHandler(io.Discard, nil)), filepath.Join(dir, "nope", "c.pem")); err == nil {
		t.Error("Start of a missing directory succeeded")
	}
}
