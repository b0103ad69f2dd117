package interop

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestInterop starts the target (Postern by default) on loopback and runs every client against it: STUN
// Bindings, turnutils_uclient over UDP/TCP/TLS with both kinds of credentials, and headless Chromium. Each case
// prints one PASS/FAIL/SKIP line; the run ends with "N passed, N failed".
func TestInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: skipped in -short mode")
	}
	rep := &report{file: os.Getenv("POSTERN_INTEROP_REPORT")}
	t.Cleanup(rep.summary) // registered first, so it runs after every server has been stopped
	dir := t.TempDir()

	// A target that does not start is a failure (or a skip, if its tool is missing) of its own line.
	start := time.Now()
	startInfo := &caseInfo{transport: "all", note: "target did not start: see the test's message"}
	started := false
	defer func() {
		if !started {
			rep.record(t, startInfo, time.Since(start))
		}
	}()
	tg := startTarget(t, dir)
	started = true
	for _, s := range tg.servers {
		t.Logf("%s up in %v: plain (udp+tcp) %d, tls %d, shared %d; log %s", s.name,
			time.Since(start).Round(time.Millisecond), s.ports.plain, s.ports.tls, s.ports.shared, s.proc.logPath)
	}

	t.Run("stun", func(t *testing.T) { runStunCases(t, rep, tg) })
	t.Run("uclient", func(t *testing.T) { runUclientCases(t, rep, tg, dir) })
	t.Run("browser", func(t *testing.T) { runBrowserCases(t, rep, tg, dir) })

	for _, s := range tg.servers {
		if done, err := s.proc.exited(); done {
			t.Errorf("%s exited during the run: %v\n%s", s.name, err, tg.logTail(60))
		}
	}
	if t.Failed() {
		fmt.Printf("interop: target %s; server logs are printed with each failing case above\n", tg.name)
	}
}
