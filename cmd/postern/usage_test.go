package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/internal/turntest"
)

// TestServeUsageFile: with --usage-file, "postern serve" appends a final
// record of an allocation, with its realm, user and traffic, by the time
// it has stopped.
func TestServeUsageFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	r := startServe(t, "--listen", "udp://127.0.0.1:0", "--user", "alice:wonderland",
		"--allow-peer", turntest.PeerIP, "--realm", "test.example", "--log-format", "json", "--usage-file", path)
	r.waitFor(t, "the listening log", func() bool { return strings.Contains(r.stderr.String(), `"msg":"postern serving"`) })
	relayRoundTrip(t, listenerAddr(t, r.stderr.String(), "udp"), "alice", "wonderland")
	if err := r.stop(t); err != nil {
		t.Fatalf("serve returned %v; stderr:\n%s", err, r.stderr)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Type, Reason, User, Realm, Node string
		BytesToPeer                     uint64 `json:"bytes_to_peer"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("usage file %q: %v", b, err)
	}
	host, _ := os.Hostname()
	if rec.Type != "final" || (rec.Reason != "refreshed" && rec.Reason != "shutdown") || rec.User != "alice" || rec.Realm != "test.example" ||
		rec.Node != host || rec.BytesToPeer != uint64(len("ping")) {
		t.Errorf("usage record %s", b)
	}
}
