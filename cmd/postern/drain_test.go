package main

import (
	"strings"
	"testing"
)

// TestDrainCommand: `postern drain` makes a running server refuse new
// allocations (keeping the old ones) and reports it; --undo reverses it.
func TestDrainCommand(t *testing.T) {
	r, adminAddr := startWithAdmin(t)
	udp := listenerAddr(t, r.stderr.String(), "udp")
	opsAllocate(t, udp, "alice", "wonderland")

	out, err := opsRun(t, "drain", "--admin", adminAddr)
	if err != nil || strings.TrimSpace(out) != "draining: 1 allocations left; new ones are refused" {
		t.Fatalf("drain = %q, %v", out, err)
	}
	if _, err := allocate(t, udp, "bob", "builder"); err == nil || !strings.Contains(err.Error(), "508") {
		t.Fatalf("Allocate while draining: err = %v, want 508", err)
	}
	out, err = opsRun(t, "drain", "--undo", "--admin", adminAddr)
	if err != nil || !strings.HasPrefix(out, "serving:") {
		t.Fatalf("drain --undo = %q, %v", out, err)
	}
	opsAllocate(t, udp, "bob", "builder")
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestDrainAddressFromEnv: the admin clients read the admin address from
// $POSTERN_ADMIN, as Kubernetes' preStop hook runs "postern drain"
// (deploy/kubernetes/postern.yaml).
func TestDrainAddressFromEnv(t *testing.T) {
	r, adminAddr := startWithAdmin(t)
	t.Setenv(envAdminAddr, adminAddr)
	out, err := opsRun(t, "drain")
	if err != nil || !strings.HasPrefix(out, "draining:") {
		t.Fatalf("drain with %s=%s: %q, %v", envAdminAddr, adminAddr, out, err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
