package main

import (
	"context"
	"encoding/json"
	"github.com/postern/postern/iceapi"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/turntest"
)

// running is "postern serve" started in-process.
type running struct {
	stdout, stderr *turntest.SyncBuffer
	cancel         context.CancelFunc
	done           chan error
}

// startServe runs the real command, "postern serve ARGS", until the test
// calls stop (or ends).
func startServe(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{stdout: &turntest.SyncBuffer{}, stderr: &turntest.SyncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	app := newApp()
	app.Writer, app.ErrWriter = r.stdout, r.stderr
	go func() { r.done <- app.Run(ctx, append([]string{"postern", "serve"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not return after its context was cancelled")
		}
	})
	return r
}

// stop cancels the server's context, as SIGINT would, and returns what the
// command returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("serve did not return within 10s of cancellation; stderr:\n%s", r.stderr)
		return nil
	}
}

// waitFor polls until cond holds, failing after 5 s or when serve returns.
func (r *running) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("serve returned %v while waiting for %s; stderr:\n%s", err, what, r.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stdout:\n%s\nstderr:\n%s", what, r.stdout, r.stderr)
		}
	}
}

// runServe runs "postern serve ARGS" to completion with ctx.
func runServe(t *testing.T, ctx context.Context, args ...string) error {
	t.Helper()
	app := newApp()
	app.Writer, app.ErrWriter = &turntest.SyncBuffer{}, &turntest.SyncBuffer{}
	return app.Run(ctx, append([]string{"postern", "serve"}, args...))
}

// TestServeEndToEnd starts the server with no credentials on loopback
// listeners with free ports, reads the iceapi.Configuration JSON it prints, allocates
// with the printed credential and relays a datagram both ways through it,
// then cancels the context and expects a clean exit.
func TestServeEndToEnd(t *testing.T) {
	r := startServe(t,
		"--listen", "udp://127.0.0.1:0",
		"--listen", "tcp+tls://127.0.0.1:0",
		"--allow-peer", "127.0.0.0/8",
		"--log-level", "debug",
	)
	r.waitFor(t, "the iceapi.Configuration JSON on stdout", func() bool { return strings.Contains(r.stdout.String(), "\n") })

	out := r.stdout.String()
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("stdout is not one line of JSON: %q", out)
	}
	var cfg iceapi.Configuration
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("stdout %q: %v", out, err)
	}
	if len(cfg.ICEServers) != 1 {
		t.Fatalf("iceapi.Configuration = %+v, want one entry", cfg.ICEServers)
	}
	srv := cfg.ICEServers[0]
	if len(srv.URLs) != 4 {
		t.Fatalf("urls = %q, want stun, turn udp, turn tcp, turns tcp", srv.URLs)
	}
	for i, prefix := range []string{"stun:127.0.0.1:", "turn:127.0.0.1:", "turn:127.0.0.1:", "turns:127.0.0.1:"} {
		if !strings.HasPrefix(srv.URLs[i], prefix) || strings.Contains(srv.URLs[i], ":0?") || strings.HasSuffix(srv.URLs[i], ":0") {
			t.Errorf("urls[%d] = %q, want prefix %q and a real port", i, srv.URLs[i], prefix)
		}
	}
	udpAddr := strings.TrimPrefix(srv.URLs[0], "stun:")
	if srv.URLs[1] != "turn:"+udpAddr+"?transport=udp" {
		t.Errorf("urls[1] = %q, want the UDP listener %s", srv.URLs[1], udpAddr)
	}

	// The printed credential works: allocate and relay through the server.
	relayRoundTrip(t, udpAddr, srv.Username, srv.Credential)

	if err := r.stop(t); err != nil {
		t.Fatalf("serve returned %v after cancellation, want nil; stderr:\n%s", err, r.stderr)
	}
}

// relayRoundTrip allocates on the TURN server at addr and relays one
// datagram to a loopback peer and one back. The allocation is released on
// return, before the caller stops the server.
func relayRoundTrip(t *testing.T, addr, username, password string) {
	t.Helper()
	a := mustAllocate(t, addr, username, password)
	defer a.relayed.Close()
	a.relay(t, "ping", "pong")
}

// TestServeStaticUser: with a user configured nothing is printed on stdout
// and the user's password works.
func TestServeStaticUser(t *testing.T) {
	r := startServe(t, "--listen", "udp://127.0.0.1:0", "--user", "alice:wonderland",
		"--allow-peer", turntest.PeerIP, "--realm", "test.example", "--log-format", "json")
	r.waitFor(t, "the listening log", func() bool { return strings.Contains(r.stderr.String(), `"msg":"postern serving"`) })

	addr := listenerAddr(t, r.stderr.String(), "udp")
	relayRoundTrip(t, addr, "alice", "wonderland")
	if err := r.stop(t); err != nil {
		t.Fatalf("serve returned %v; stderr:\n%s", err, r.stderr)
	}
	if out := r.stdout.String(); out != "" {
		t.Errorf("stdout = %q, want nothing when credentials are configured", out)
	}
}

// listenerAddr finds the address of the first listener of kind in the
// "postern serving" JSON log line.
func listenerAddr(t *testing.T, logs, kind string) string {
	t.Helper()
	for line := range strings.Lines(logs) {
		var rec struct {
			Msg       string `json:"msg"`
			Listeners string `json:"listeners"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "postern serving" {
			continue
		}
		for _, l := range strings.Fields(rec.Listeners) {
			if addr, ok := strings.CutPrefix(l, kind+"://"); ok {
				return addr
			}
		}
	}
	t.Fatalf("no %s listener in the logs:\n%s", kind, logs)
	return ""
}

// TestServeBindFailure: an explicitly configured listener that cannot bind
// fails the command with an error naming it.
func TestServeBindFailure(t *testing.T) {
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.LocalAddr().String()

	done := make(chan error, 1)
	go func() { done <- runServe(t, t.Context(), "--listen", "udp://"+addr, "--secret", "s") }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Fatalf("serve = %v, want an error naming %s", err, addr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not fail on a busy port")
	}
}

// TestServeCancelledBeforeStart: a context cancelled early still gives a
// clean exit.
func TestServeCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := runServe(t, ctx, "--listen", "udp://127.0.0.1:0", "--secret", "s"); err != nil {
		t.Fatalf("serve = %v, want nil", err)
	}
}

func TestVersion(t *testing.T) {
	if v := version(); v == "" || strings.HasPrefix(v, "v") {
		t.Errorf("version() = %q", v)
	}
	if s := software(); !strings.HasPrefix(s, "postern/") {
		t.Errorf("software() = %q", s)
	}
}
