package redistest

import "testing"

// TestStartKillRestart shows the harness's three states: answering,
// killed (PING fails), answering again on the same address.
func TestStartKillRestart(t *testing.T) {
	s := Start(t)
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("after Start: %v", err)
	}
	s.Kill()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("after Kill: PING still answered")
	}
	s.Restart()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
}
