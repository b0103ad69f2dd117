package main

import (
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
)

// writeFile writes content to a new file in a test directory and returns its
// path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// settingsFor runs "postern serve ARGS" with the action replaced by one that
// only loads the settings, so flag parsing is the real one.
func settingsFor(t *testing.T, args ...string) (config.Values, error) {
	t.Helper()
	var got config.Values
	var loadErr error
	serve := serveCommand()
	serve.Action = func(_ context.Context, cmd *cli.Command) error {
		got, loadErr = loadSettings(cmd)
		return loadErr
	}
	app := newApp()
	app.Commands = []*cli.Command{serve}
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	err := app.Run(t.Context(), append([]string{"postern", "serve"}, args...))
	if err != nil && loadErr == nil {
		return nil, err // a parsing error, before the action
	}
	return got, loadErr
}

// relayOf is the relay configuration the declared settings of s give.
func relayOf(s config.Values) relay.Config {
	var c relay.Config
	config.Apply(config.Settings(), s, &c)
	return c
}

func TestFlagsOverrideConfig(t *testing.T) {
	path := writeFile(t, "c.toml", `
listen = ["udp://127.0.0.1:1000", "tcp://127.0.0.1:1000"]
realm = "file-realm"
[auth]
users = { alice = "a", bob = "b" }
secrets = ["f1", "f2"]
[relay]
ports = "50000-50100"
external_ip = "203.0.113.1"
allow_peers = ["10.0.0.0/8", "172.16.0.0/12"]
[limits]
user_quota = 5
max_lifetime = "30m"
[log]
level = "warn"
`)
	s, err := settingsFor(t, "--config", path,
		"--realm", "flag-realm",
		"--listen", "tcp://127.0.0.1:2000",
		"--secret", "c1,with,commas",
		"--user", "carol:p:w",
		"--relay-ports", "40000-40010",
		"--allow-peer", "127.0.0.0/8",
		"--user-quota", "0",
		"--max-lifetime", "2h",
		"--nonce-lifetime", "1s",
		"--log-level", "debug",
	)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	listeners, explicit := config.Listeners(s)
	users, _, _ := config.Users(s)
	allow, _ := config.Peers(s)
	check("realm", config.Realm(s), "flag-realm")
	check("listeners", listeners, []relay.ListenSpec{{Kind: relay.TCP, Addr: "127.0.0.1:2000"}})
	check("listenersExplicit", explicit, true)
	check("secrets", config.Secrets(s), []string{"c1,with,commas"})
	check("users", users, map[string]string{"carol": "p:w"})
	check("relayPorts", relayOf(s).RelayPorts, allocations.PortRange{Low: 40000, High: 40010})
	check("allowPeers", allow, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	check("userQuota", relayOf(s).UserQuota, 0)
	check("maxLifetime", relayOf(s).MaxLifetime, 2*time.Hour)
	check("nonceLifetime", config.NonceLifetime(s), time.Second)
	check("logLevel", config.LogLevel(s).String(), "DEBUG")
	// Not overridden: the file's value stands.
	check("externalIP", config.AdvertisedHost(s), netip.MustParseAddr("203.0.113.1"))
	check("defaultLifetime", relayOf(s).DefaultLifetime, 10*time.Minute)
}

func TestFlagsAlone(t *testing.T) {
	s, err := settingsFor(t, "--listen", "udp://127.0.0.1:0", "--listen", "tls://127.0.0.1:0",
		"--user", "a:1", "--user", "b:2", "--deny-peer", "8.8.8.8", "--max-lifetime", "5m")
	if err != nil {
		t.Fatal(err)
	}
	listeners, _ := config.Listeners(s)
	users, _, _ := config.Users(s)
	_, deny := config.Peers(s)
	if len(listeners) != 2 || listeners[1].Kind != relay.TLS {
		t.Errorf("listeners = %v", listeners)
	}
	if len(users) != 2 || users["b"] != "2" {
		t.Errorf("users = %v", users)
	}
	if deny[0] != netip.MustParsePrefix("8.8.8.8/32") {
		t.Errorf("denyPeers = %v", deny)
	}
	// An unset default lifetime follows a maximum set below it.
	if r := relayOf(s); r.MaxLifetime != 5*time.Minute || r.DefaultLifetime != 5*time.Minute {
		t.Errorf("lifetimes max %v default %v, want 5m 5m", r.MaxLifetime, r.DefaultLifetime)
	}
}

func TestUsersFile(t *testing.T) {
	file := writeFile(t, "users", "# comment\nalice:secret\nbob:0x0123456789abcdef0123456789abcdef\n")
	s, err := settingsFor(t, "--users-file", file, "--user", "carol:c")
	if err != nil {
		t.Fatal(err)
	}
	users, keys, _ := config.Users(s)
	if users["alice"] != "secret" || users["carol"] != "c" || len(keys["bob"]) != 16 {
		t.Errorf("users %v keys %v", users, keys)
	}

	_, err = settingsFor(t, "--users-file", file, "--user", "bob:b")
	if err == nil || !strings.Contains(err.Error(), "bob") || !strings.Contains(err.Error(), "keep one") {
		t.Errorf("user in both --user and --users-file: err %v", err)
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{"listen without scheme", []string{"--listen", "127.0.0.1:3478"}, []string{"listen (--listen)", "SCHEME://HOST:PORT"}},
		{"listen unknown scheme", []string{"--listen", "sctp://:3478"}, []string{"listen (--listen)", "unknown scheme"}},
		{"listen bad port", []string{"--listen", "udp://:99999"}, []string{"listen (--listen)", "99999"}},
		{"listen host name", []string{"--listen", "udp://example.com:3478"}, []string{"listen (--listen)", "not an IP"}},
		{"bad CIDR", []string{"--allow-peer", "10.0.0.0/33"}, []string{"relay.allow_peers (--allow-peer)", "10.0.0.0/33"}},
		{"bad deny peer", []string{"--deny-peer", "nowhere"}, []string{"relay.deny_peers (--deny-peer)", "nowhere"}},
		{"port range reversed", []string{"--relay-ports", "60000-50000"}, []string{"relay.ports (--relay-ports)", "60000", "LOW-HIGH"}},
		{"port range not numbers", []string{"--relay-ports", "low-high"}, []string{"relay.ports (--relay-ports)", "LOW-HIGH"}},
		{"port range zero", []string{"--relay-ports", "0-100"}, []string{"relay.ports (--relay-ports)"}},
		{"user without colon", []string{"--user", "alice"}, []string{"--user", "no colon", "NAME:PASSWORD"}},
		{"user without name", []string{"--user", ":pw"}, []string{"--user", "empty user name"}},
		{"user without password", []string{"--user", "alice:"}, []string{"--user alice", "empty password"}},
		{"user twice", []string{"--user", "a:1", "--user", "a:2"}, []string{"--user a", "twice"}},
		{"empty secret", []string{"--secret", ""}, []string{"auth.secrets (--secret)", "empty"}},
		{"relay ip not an IP", []string{"--relay-ip", "host"}, []string{"relay.ip (--relay-ip)", "not an IP"}},
		{"relay ip unspecified", []string{"--relay-ip", "0.0.0.0"}, []string{"relay.ip (--relay-ip)", "unicast"}},
		{"external ip multicast", []string{"--external-ip", "224.0.0.1"}, []string{"relay.external_ip (--external-ip)", "unicast"}},
		{"negative quota", []string{"--user-quota", "-1"}, []string{"limits.user_quota (--user-quota)", "0 for unlimited"}},
		{"negative lifetime", []string{"--max-lifetime", "-1s"}, []string{"limits.max_lifetime (--max-lifetime)", "positive"}},
		{"default above max", []string{"--default-lifetime", "2h"}, []string{"limits.default_lifetime (--default-lifetime)", "limits.max_lifetime (--max-lifetime)"}},
		{"negative nonce lifetime", []string{"--nonce-lifetime", "-5m"}, []string{"auth.nonce_lifetime (--nonce-lifetime)"}},
		{"cert without key", []string{"--tls-cert", "c.pem"}, []string{"tls.cert (--tls-cert)", "tls.key (--tls-key)", "both or neither"}},
		{"key without cert", []string{"--tls-key", "k.pem"}, []string{"both or neither"}},
		{"log level", []string{"--log-level", "loud"}, []string{"log.level (--log-level)", "debug, info, warn or error"}},
		{"log format", []string{"--log-format", "xml"}, []string{"log.format (--log-format)", "text or json"}},
		{"realm with quote", []string{"--realm", `a"b`}, []string{"realm (--realm)"}},
		{"realm too long", []string{"--realm", strings.Repeat("r", 128)}, []string{"realm (--realm)", "127"}},
		{"users file missing", []string{"--users-file", "/nonexistent/users"}, []string{"auth.users_file (--users-file)", "/nonexistent/users"}},
		{"config missing", []string{"--config", "/nonexistent/postern.toml"}, []string{"/nonexistent/postern.toml"}},
		{"duration flag syntax", []string{"--max-lifetime", "forever"}, []string{"max-lifetime", "--help"}},
		{"unknown flag", []string{"--realmm", "x"}, []string{"realmm", "postern serve --help"}},
		{"stray argument", []string{"extra"}, []string{"no arguments", "extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.name == "stray argument" {
				// Checked by the real action, before it loads anything.
				err = runServe(t, t.Context(), tt.args...)
			} else {
				_, err = settingsFor(t, tt.args...)
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.want)
			}
			msg := err.Error()
			for _, want := range tt.want {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is more than one line", msg)
			}
		})
	}
}

// TestUserErrorHidesPassword: a malformed --user may hold a password (say
// "alice=hunter2"); the error must not print it.
func TestUserErrorHidesPassword(t *testing.T) {
	_, err := settingsFor(t, "--user", "alice=hunter2")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want an error without the password", err)
	}
}

func TestConfigErrorsInSettings(t *testing.T) {
	tests := []struct {
		name, toml string
		want       []string
	}{
		{"user name with colon", "[auth]\nusers = { \"a:b\" = \"pw\" }\n", []string{"auth.users", "':'"}},
		{"user with empty password", "[auth]\nusers = { a = \"\" }\n", []string{"auth.users", "empty password"}},
		{"bad listen", "listen = [\"udp:/:1\"]\n", []string{"listen (--listen)"}},
		{"bad ports", "[relay]\nports = \"9-1\"\n", []string{"relay.ports"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := settingsFor(t, "--config", writeFile(t, "c.toml", tt.toml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}
