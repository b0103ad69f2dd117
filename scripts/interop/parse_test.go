package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests need no external tool: they pin down how the suite reads client output, so a change in the
// parser cannot turn a failing interop run into a passing one.

func TestParseUclient(t *testing.T) {
	tests := []struct {
		file     string
		messages int
		wantWhy  string // "" when the run counts as a pass
		relays   int
	}{
		// Captured from coturn 4.6.1's turnutils_uclient -v against coturn, 5 messages.
		{file: "uclient-pass.txt", messages: 5, relays: 2},
		{file: "uclient-pass.txt", messages: 100, wantWhy: "sent 5 messages, want 100", relays: 2},
		{file: "uclient-loss.txt", messages: 5, wantWhy: "received 4 of 5 messages", relays: 2},
		{file: "uclient-auth-error.txt", messages: 5, wantWhy: "no totals in uclient output; last error: ERROR: Cannot complete Allocation"},
		// Captured against a server enforcing RFC 8656's channel range (uclient picks 0x4000-0x7FFF).
		{file: "uclient-channel-400.txt", messages: 5, relays: 2,
			wantWhy: "no totals in uclient output; last error: channel bind: error 400 (Bad Request: missing CHANNEL-NUMBER or outside 0x4000-0x4FFF)"},
		{file: "uclient-empty.txt", messages: 5, wantWhy: "no totals in uclient output"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			r := parseUclient(string(b))
			if got := r.check(tt.messages); got != tt.wantWhy {
				t.Errorf("check(%d) = %q, want %q (parsed %+v)", tt.messages, got, tt.wantWhy, r)
			}
			if len(r.relays) != tt.relays {
				t.Errorf("relays = %v, want %d of them", r.relays, tt.relays)
			}
		})
	}
}

func TestParseUclientLossOnly(t *testing.T) {
	// Totals equal but the loss line disagrees: the loss line must still fail the run.
	out := "1: : start_mclient: tot_send_msgs=100, tot_recv_msgs=100\n" +
		"1: : IPv4. Received relay addr: 127.0.0.1:20000\n" +
		"1: : Total lost packets 3 (3.000000%), total send dropped 0 (0.000000%)\n"
	if got, want := parseUclient(out).check(100), "lost 3, send dropped 0"; got != want {
		t.Errorf("check = %q, want %q", got, want)
	}
}

func TestRESTPassword(t *testing.T) {
	// Vector computed with: printf %s 1700000000:bob | openssl dgst -sha1 -hmac interop-rest-secret -binary | base64
	if got, want := restPassword("interop-rest-secret", "1700000000:bob"), "gpWcls90VIVaJfQIkhg4K390TBg="; got != want {
		t.Errorf("restPassword = %q, want %q", got, want)
	}
	user, pass := mintREST(restSecret, restUser, time.Hour)
	if !strings.HasSuffix(user, ":"+restUser) || pass != restPassword(restSecret, user) {
		t.Errorf("mintREST = %q, %q", user, pass)
	}
}

func TestModFileDeclares(t *testing.T) {
	tests := []struct {
		gomod string
		want  bool
	}{
		{"module github.com/postern/postern\n\ngo 1.26\n", true},
		{"// comment\nmodule \"github.com/postern/postern\"\n", true},
		{"module github.com/postern/postern/v2\n", false},
		{"go 1.26\n", false},
	}
	for _, tt := range tests {
		if got := modFileDeclares([]byte(tt.gomod), modulePath); got != tt.want {
			t.Errorf("modFileDeclares(%q) = %v, want %v", tt.gomod, got, tt.want)
		}
	}
}

func TestTailLines(t *testing.T) {
	if got, want := tailLines("a\nb\nc\n", 2), "... (1 earlier lines)\nb\nc"; got != want {
		t.Errorf("tailLines = %q, want %q", got, want)
	}
	if got, want := tailLines("a\n", 5), "a"; got != want {
		t.Errorf("tailLines = %q, want %q", got, want)
	}
}

func TestCandidateAddrs(t *testing.T) {
	got := candidateAddrs(map[string][]string{
		"A": {"candidate:2605850961 1 udp 50339839 127.0.0.1 41007 typ relay raddr 0.0.0.0 rport 0 generation 0"},
		"B": {"candidate:1 1 udp 8191 ::1 41026 typ relay", "garbage"},
	})
	want := []string{"127.0.0.1:41007", "[::1]:41026"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("candidateAddrs = %v, want %v", got, want)
	}
}
