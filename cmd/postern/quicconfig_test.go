package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/config"
)

// The [web] quic_* settings are declared in package config; these tests
// show that the declarations reach the flags, the file, check-config and
// reload of the command.

func TestQUICSettingsFileAndFlags(t *testing.T) {
	path := writeFile(t, "c.toml", "[web]\nquic_backend = \"127.0.0.1:8443\"\nquic_max_flows = 10\n")
	s, err := settingsFor(t, "--config", path, "--web-quic-max-flows", "-1", "--web-quic-idle-timeout", "90s")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Values{"web.quic_backend": "127.0.0.1:8443", "web.quic_max_flows": -1, "web.quic_idle_timeout": 90 * time.Second}
	if len(s) != len(want) {
		t.Errorf("declared = %v, want %v", s, want)
	}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
	if _, err := settingsFor(t, "--web-quic-backend-proxy-protocol"); err == nil || !strings.Contains(err.Error(), "web.quic_backend (--web-quic-backend) is not") {
		t.Errorf("proxy protocol without backend: %v", err)
	}
}

func TestQUICUnknownKeyListsDeclared(t *testing.T) {
	path := writeFile(t, "c.toml", "[web]\nquic_bakend = \"x\"\n")
	_, err := config.Load(path)
	if err == nil || !strings.Contains(err.Error(), "unknown key web.quic_bakend") || !strings.Contains(err.Error(), "quic_backend, quic_backend_proxy_protocol") {
		t.Errorf("Load = %v", err)
	}
}

func TestCheckConfigQUIC(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       []string
	}{
		{"bad value", "[web]\n\nquic_backend = \"8443\"\n", []string{":3: web.quic_backend (--web-quic-backend)", "write HOST:PORT"}},
		{"wrong type", "[web]\nquic_max_flows = \"many\"\n", []string{":2: web.quic_max_flows", "not an integer"}},
		{"with another problem", "[relay]\nports = \"60000-50000\"\n[web]\nquic_max_flows = 0\n", []string{":2: relay.ports", ":4: web.quic_max_flows"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "c.toml", tc.toml)
			_, errOut, err := runCmd(t, "", "check-config", path)
			if err == nil {
				t.Fatalf("no problem reported; stderr:\n%s", errOut)
			}
			rest := errOut
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q; stderr:\n%s", w, errOut)
				}
				rest = rest[i+len(w):]
			}
		})
	}
	path := writeFile(t, "c.toml", "[auth]\nsecrets = [\"s\"]\n[web]\nquic_backend = \"127.0.0.1:8443\"\n")
	if out, errOut, err := runCmd(t, "", "check-config", path); err != nil || !strings.Contains(out, ": OK: ") {
		t.Errorf("valid QUIC settings: %v\n%s%s", err, out, errOut)
	}
}

func TestRestartOnlyQUIC(t *testing.T) {
	loaded := config.Values{"web.quic_backend": "127.0.0.1:8443", "web.quic_max_flows": 5, "realm": "other"}
	if got := strings.Join(config.RestartChanged(config.Settings(), nil, loaded), " "); got != "web.quic_backend web.quic_max_flows realm" {
		t.Errorf("RestartChanged = %q", got)
	}
	// A reload keeps the running values of restart-only settings.
	if kept := config.TakeReloadable(config.Settings(), nil, loaded); kept != nil {
		t.Errorf("reload took restart-only values: %v", kept)
	}
}

// TestServeQUICBackend: --web-quic-backend reaches the running relay: a
// QUIC Initial-like datagram sent to the UDP listener arrives at the
// backend, and the backend's answer comes back to the client.
func TestServeQUICBackend(t *testing.T) {
	backend, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	r := startServe(t, "--listen", "udp://127.0.0.1:0", "--secret", "s", "--log-format", "json",
		"--web-quic-backend", backend.LocalAddr().String())
	r.waitFor(t, "the listening log", func() bool { return strings.Contains(r.stderr.String(), `"msg":"postern serving"`) })
	addr := listenerAddr(t, r.stderr.String(), "udp")

	client, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	initial := make([]byte, 1200) // RFC 9000 §14.1: Initial datagrams are at least 1200 bytes
	initial[0] = 0xc0             // long header, QUIC bit (RFC 9000 §17.2)
	if _, err := client.Write(initial); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := backend.ReadFrom(buf)
	if err != nil || n != len(initial) || buf[0] != 0xc0 {
		t.Fatalf("backend read %d bytes, %v; stderr:\n%s", n, err, r.stderr)
	}
	if _, err := backend.WriteTo([]byte{0xc0, 1, 2, 3}, from); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(buf); err != nil || n != 4 {
		t.Fatalf("client read %d bytes, %v", n, err)
	}
}
