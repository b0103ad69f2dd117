package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/iceapi"
)

// decodeICEServers decodes iceapi.Configuration JSON strictly: nothing but the
// members of RTCConfiguration and RTCIceServer.
func decodeICEServers(t *testing.T, out string) iceServer {
	t.Helper()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("output %q: want one line", out)
	}
	var doc iceapi.Configuration
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if len(doc.ICEServers) != 1 {
		t.Fatalf("iceapi.Configuration %+v: want one entry", doc.ICEServers)
	}
	return doc.ICEServers[0]
}

func TestICEServersCommand(t *testing.T) {
	t.Setenv(envSecret, "")
	config := writeFile(t, "c.toml", `
listen = ["udp://:3478", "tls://:5349", "tcp+tls://:443"]
[auth]
secrets = ["cfg-secret"]
[relay]
external_ip = "203.0.113.7"
`)
	configHost := writeFile(t, "h.toml", `
listen = ["udp://:3478", "tcp://:3478"]
[auth]
secrets = ["cfg-secret"]
[ice_servers]
host = "turn.example.org"
user = "app"
ttl = "1h"
`)
	configLocal := writeFile(t, "l.toml", "listen = [\"udp://127.0.0.1:3478\", \"tcp://[::1]:3478\"]\n[auth]\nsecrets = [\"s\"]\n")
	tests := []struct {
		name     string
		args     []string
		wantURLs []string
		secret   string
		user     string
		ttl      time.Duration
	}{
		{
			name:   "defaults with --host",
			args:   []string{"--host", "turn.example.org", "--secret", "s"},
			secret: "s", user: "postern", ttl: 24 * time.Hour,
			wantURLs: []string{
				"stun:turn.example.org:3478", "turn:turn.example.org:3478?transport=udp",
				"stun:turn.example.org:443", "turn:turn.example.org:443?transport=udp",
				"turn:turn.example.org:3478?transport=tcp", "turn:turn.example.org:443?transport=tcp",
				"turns:turn.example.org:5349?transport=tcp", "turns:turn.example.org:443?transport=tcp",
			},
		},
		{
			name:   "ports, IPv6 host, user, ttl",
			args:   []string{"--host", "[2001:db8::7]", "--secret", "s", "--ports", "tls:5349,udp:3478", "--ports", "tcp://:80", "--user", "bob", "--ttl", "10m"},
			secret: "s", user: "bob", ttl: 10 * time.Minute,
			wantURLs: []string{"stun:[2001:db8::7]:3478", "turn:[2001:db8::7]:3478?transport=udp", "turn:[2001:db8::7]:80?transport=tcp", "turns:[2001:db8::7]:5349?transport=tcp"},
		},
		{
			name:   "config: listeners and external_ip",
			args:   []string{"--config", config},
			secret: "cfg-secret", user: "postern", ttl: 24 * time.Hour,
			wantURLs: []string{
				"stun:203.0.113.7:3478", "turn:203.0.113.7:3478?transport=udp",
				"turn:203.0.113.7:443?transport=tcp",
				"turns:203.0.113.7:5349?transport=tcp", "turns:203.0.113.7:443?transport=tcp",
			},
		},
		{
			name:   "config: ice_servers",
			args:   []string{"--config", configHost},
			secret: "cfg-secret", user: "app", ttl: time.Hour,
			wantURLs: []string{"stun:turn.example.org:3478", "turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp"},
		},
		{
			name:   "config: listener addresses",
			args:   []string{"--config", configLocal},
			secret: "s", user: "postern", ttl: 24 * time.Hour,
			wantURLs: []string{"stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp", "turn:[::1]:3478?transport=tcp"},
		},
		{
			name:   "flags beat config",
			args:   []string{"--config", configHost, "--host", "192.0.2.9", "--ports", "udp:1234"},
			secret: "cfg-secret", user: "app", ttl: time.Hour,
			wantURLs: []string{"stun:192.0.2.9:1234", "turn:192.0.2.9:1234?transport=udp"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCmd(t, "", append([]string{"ice-servers"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			srv := decodeICEServers(t, out)
			if !reflect.DeepEqual(srv.URLs, tt.wantURLs) {
				t.Errorf("urls\n got %q\nwant %q", srv.URLs, tt.wantURLs)
			}
			checkREST(t, srv.Username, srv.Credential, tt.secret, tt.user, time.Now().Add(tt.ttl))
		})
	}
}

func TestICEServersErrors(t *testing.T) {
	t.Setenv(envSecret, "")
	zeroPort := writeFile(t, "z.toml", "listen = [\"udp://127.0.0.1:0\"]\n[auth]\nsecrets = [\"s\"]\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no host", []string{"--secret", "s"}, "give --host"},
		{"no secret", []string{"--host", "h.example"}, "no secret"},
		{"host with port", []string{"--host", "h.example:3478", "--secret", "s"}, "without scheme or port"},
		{"host with scheme", []string{"--host", "turn://h.example", "--secret", "s"}, "without scheme or port"},
		{"unspecified host", []string{"--host", "0.0.0.0", "--secret", "s"}, "cannot dial"},
		{"bad ports", []string{"--host", "h.example", "--secret", "s", "--ports", "udp3478"}, "SCHEME:PORT"},
		{"bad scheme", []string{"--host", "h.example", "--secret", "s", "--ports", "sctp:1"}, "unknown scheme"},
		{"port 0", []string{"--host", "h.example", "--secret", "s", "--ports", "udp:0"}, "name the port"},
		{"port 0 in config", []string{"--config", zeroPort}, "name the port"},
		{"argument", []string{"h.example"}, "did you mean --host h.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCmd(t, "", append([]string{"ice-servers"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
			if out != "" {
				t.Errorf("stdout %q on error", out)
			}
		})
	}
}
