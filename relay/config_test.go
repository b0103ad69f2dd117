package relay

import (
	"strings"
	"testing"
)

func TestParseListenSpec(t *testing.T) {
	good := []struct {
		in   string
		want ListenSpec
	}{
		{"udp://:3478", ListenSpec{UDP, ":3478"}},
		{"tcp://0.0.0.0:3478", ListenSpec{TCP, "0.0.0.0:3478"}},
		{"tls://127.0.0.1:5349", ListenSpec{TLS, "127.0.0.1:5349"}},
		{"tcp+tls://[::1]:443", ListenSpec{TCPTLS, "[::1]:443"}},
		{"TCP+TLS://:443", ListenSpec{TCPTLS, ":443"}},
		{"udp://[::]:0", ListenSpec{UDP, "[::]:0"}},
		{"udp://localhost:3478", ListenSpec{UDP, "localhost:3478"}},
	}
	for _, tc := range good {
		got, err := ParseListenSpec(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseListenSpec(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if err == nil {
			if again, err := ParseListenSpec(got.String()); err != nil || again != got {
				t.Errorf("round trip of %q: %v, %v", got.String(), again, err)
			}
		}
	}
	bad := []struct{ in, mention string }{
		{"3478", "SCHEME://HOST:PORT"},
		{"udp:3478", "SCHEME://HOST:PORT"},
		{"quic://:443", "unknown scheme"},
		{"udp://:99999", "port"},
		{"udp://:http", "port"},
		{"udp://::1:3478", "brackets"},
		{"tcp://example.org:3478", "not an IP"},
		{"tls://127.0.0.1", "brackets"},
	}
	for _, tc := range bad {
		_, err := ParseListenSpec(tc.in)
		if err == nil {
			t.Errorf("ParseListenSpec(%q) succeeded", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("ParseListenSpec(%q) error %q does not mention %q", tc.in, err, tc.mention)
		}
	}
}

func TestDefaultListeners(t *testing.T) {
	var got []string
	for _, l := range DefaultListeners() {
		got = append(got, l.String())
	}
	want := "udp://:3478 tcp://:3478 tls://:5349 udp://:443 tcp+tls://:443"
	if strings.Join(got, " ") != want {
		t.Errorf("defaults %v, want %v", got, want)
	}
}
