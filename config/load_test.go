package config

import (
	"errors"
	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeFile writes content to a new file in a test directory and returns
// its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadUnknownKeyIsSentinel(t *testing.T) {
	_, err := Load(writeFile(t, "c.toml", "bogus = 1\n"))
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Load: %v, want ErrUnknownKey", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load: %v, want a not-exist error", err)
	}
}

func TestParseICEHost(t *testing.T) {
	for in, want := range map[string]string{
		"turn.example.org":  "turn.example.org",
		"TURN.Example.org.": "turn.example.org",
		"192.0.2.1":         "192.0.2.1",
		"::ffff:192.0.2.1":  "192.0.2.1",
		"[2001:db8::1]":     "2001:db8::1",
		"localhost":         "localhost",
	} {
		if got, err := ICEHost(in); err != nil || got != want {
			t.Errorf("ICEHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-a.example", "a..b", "a_b.example", "fe80::1%eth0", "ff02::1", strings.Repeat("a", 64) + ".example"} {
		if got, err := ICEHost(in); err == nil {
			t.Errorf("ICEHost(%q) = %q, want an error", in, got)
		}
	}
}

// TestCheckConfigTypeHints: check-config explains the expected type of the
// newer keys (optional ints, int64, float, bool) as it does for the others.
func TestCheckConfigTypeHints(t *testing.T) {
	for key, want := range map[string]string{
		"max_conns":            "a whole number without quotes",
		"allocation_bandwidth": "a whole number without quotes",
		"unauthenticated_rate": "a number without quotes",
	} {
		if got := TableHint([]string{"limits", key}); !strings.Contains(got, want) {
			t.Errorf("TableHint(limits.%s) = %q, want %q", key, got, want)
		}
	}
	if got := TableHint([]string{"tls", "acme"}); got != "true or false, without quotes" {
		t.Errorf("TableHint(tls.acme) = %q", got)
	}
}

// TestTableWrongType: a table key given a value is a problem saying so.
func TestTableWrongType(t *testing.T) {
	_, problems, err := Read("auth = 1\n")
	if err != nil || len(problems) != 1 || problems[0].Msg != "auth: wrong type: write a table: [auth] followed by its keys" {
		t.Errorf("Read = %v, %v", problems, err)
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1h30m")); err != nil || time.Duration(d) != 90*time.Minute {
		t.Fatalf("UnmarshalText: %v %v", d, err)
	}
	b, _ := d.MarshalText()
	if string(b) != "1h30m0s" {
		t.Errorf("MarshalText = %q", b)
	}
	if err := d.UnmarshalText([]byte("600")); err == nil {
		t.Error("UnmarshalText(600) succeeded: a bare number must be refused")
	}
}

func TestLoadStrict(t *testing.T) {
	tests := []struct {
		name    string
		toml    string
		wantErr []string // substrings; nil means success
	}{
		{name: "empty", toml: ""},
		{name: "known keys", toml: "realm = \"r\"\n[auth]\nsecrets = [\"s\"]\nnonce_lifetime = \"30s\"\n"},
		{name: "unknown top-level key", toml: "relam = \"r\"\n",
			wantErr: []string{"unknown key", "relam", "keys at the top level", "realm"}},
		{name: "unknown key in table", toml: "[auth]\nusres = { a = \"b\" }\n",
			wantErr: []string{"auth.usres", "keys in [auth]", "users_file"}},
		{name: "unknown table reported once", toml: "[metrics]\nlisten = \"x\"\nport = 1\n",
			wantErr: []string{"unknown key metrics", "listen, log, auth", ", realm)"}},
		{name: "two unknown keys", toml: "[relay]\nport = \"1-2\"\n[limits]\nquota = 1\n",
			wantErr: []string{"relay.port", "limits.quota"}},
		{name: "key of the wrong table", toml: "[relay]\nuser_quota = 3\n",
			wantErr: []string{"relay.user_quota"}},
		{name: "duration as a number", toml: "[limits]\nmax_lifetime = 3600\n",
			wantErr: []string{"max_lifetime", `"3600" is not a duration`, `"10m"`}},
		{name: "bad duration", toml: "[auth]\nnonce_lifetime = \"ten minutes\"\n",
			wantErr: []string{"nonce_lifetime", "not a duration"}},
		{name: "wrong type", toml: "listen = \"udp://:3478\"\n",
			wantErr: []string{"listen"}},
		{name: "syntax error", toml: "realm = \n",
			wantErr: []string{"line 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "config.toml", tt.toml)
			_, err := Load(path)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestLoadValues(t *testing.T) {
	path := writeFile(t, "c.toml", `
listen = ["udp://127.0.0.1:3478", "tcp+tls://[::1]:443"]
realm = "example.org"
[log]
level = "debug"
format = "json"
[auth]
users = { alice = "pw:with:colons", bob = "x" }
secrets = ["s1", "s2"]
nonce_lifetime = "90s"
[relay]
ip = "192.0.2.10"
external_ip = "203.0.113.5"
ports = "50000-50010"
allow_peers = ["10.0.0.0/8"]
deny_peers = ["198.51.100.7"]
[limits]
user_quota = 3
max_lifetime = "2h"
default_lifetime = "5m"
ip_quota = 2
user_bandwidth = 125000
unauthenticated_rate = 0.0
max_conns_per_ip = 0
idle_timeout = "1m"
[drain]
alternate_server = "192.0.2.8:3478"
[tls]
cert = "c.pem"
key = "k.pem"
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Resolve(Settings(), c)
	if err != nil {
		t.Fatal(err)
	}
	// Only the values that differ from their default are kept.
	want := Values{
		"listen":                      []string{"udp://127.0.0.1:3478", "tcp+tls://[::1]:443"},
		"auth.users":                  map[string]string{"alice": "pw:with:colons", "bob": "x"},
		"auth.secrets":                []string{"s1", "s2"},
		"relay.ip":                    []string{"192.0.2.10"},
		"relay.external_ip":           []string{"203.0.113.5"},
		"relay.allow_peers":           []string{"10.0.0.0/8"},
		"relay.deny_peers":            []string{"198.51.100.7"},
		"tls.cert":                    "c.pem",
		"tls.key":                     "k.pem",
		"limits.ip_quota":             2,
		"limits.user_bandwidth":       125000,
		"limits.unauthenticated_rate": 0.0, // 0 written: no limit
		"limits.max_conns_per_ip":     0,   // 0 written: no cap
		"limits.idle_timeout":         time.Minute,
		"drain.alternate_server":      "192.0.2.8:3478",
		"limits.user_quota":           3,
		"limits.max_lifetime":         2 * time.Hour,
		"limits.default_lifetime":     5 * time.Minute,
		"realm":                       "example.org",
		"auth.nonce_lifetime":         90 * time.Second,
		"relay.ports":                 "50000-50010",
		"log.level":                   "debug",
		"log.format":                  "json",
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("settings:\n got %+v\nwant %+v", s, want)
	}
	r := relayOf(s)
	if want := []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:3478"}, {Kind: relay.TCPTLS, Addr: "[::1]:443"}}; !reflect.DeepEqual(r.Listeners, want) || !r.ListenersExplicit {
		t.Errorf("listeners %v explicit %v, want %v", r.Listeners, r.ListenersExplicit, want)
	}
	if r.RelayIP != netip.MustParseAddr("192.0.2.10") || !reflect.DeepEqual(r.ExternalIP, relay.ExternalIPs{V4: netip.MustParseAddr("203.0.113.5")}) || r.DiscoverExternalIP != nil {
		t.Errorf("relay ip %v external %+v discover %v", r.RelayIP, r.ExternalIP, r.DiscoverExternalIP)
	}
	allow, deny := Peers(s)
	if !slices.Equal(allow, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}) || !slices.Equal(deny, []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}) {
		t.Errorf("peers %v %v", allow, deny)
	}
	if a := AdminOf(s); a != (Admin{Listen: DefaultAdminListen}) {
		t.Errorf("admin %+v", a)
	}
	if ice := ICEOf(s); ice != (ICE{User: DefaultICEUser, TTL: DefaultICETTL}) {
		t.Errorf("ice %+v", ice)
	}
}

// relayOf is the relay configuration the declared settings of s give.
func relayOf(s Values) relay.Config {
	var c relay.Config
	Apply(Settings(), s, &c)
	return c
}

func TestDefaults(t *testing.T) {
	s, err := Resolve(Settings(), nil)
	if err != nil || s != nil {
		t.Fatalf("defaults: %v %v, want the nil Values", s, err)
	}
	if l, explicit := Listeners(s); !reflect.DeepEqual(l, relay.DefaultListeners()) || explicit {
		t.Errorf("listeners = %v explicit=%v, want relay.DefaultListeners() not explicit", l, explicit)
	}
	r := relayOf(s)
	if Realm(s) != "postern" || NonceLifetime(s) != 10*time.Minute || r.MaxLifetime != time.Hour ||
		r.DefaultLifetime != 10*time.Minute || r.RelayPorts != (allocations.PortRange{Low: 49152, High: 65535}) ||
		r.UserQuota != 0 || LogFormat(s) != "text" || LogLevel(s) != 0 {
		t.Errorf("defaults: %+v", r)
	}
	users, keys, _ := Users(s)
	if r.RelayIP.IsValid() || AdvertisedHost(s).IsValid() || len(users)+len(keys)+len(Secrets(s)) != 0 {
		t.Errorf("defaults: %+v", r)
	}
}

// exampleSetting matches the commented-out settings of config.toml.example,
// "# key = value"; prose and indented examples do not match.
var exampleSetting = regexp.MustCompile(`(?m)^# ?([a-z_]+ = .*)$`)

// TestConfigExample parses the real config.toml.example, as shipped and with
// every setting uncommented, and checks that it documents every key of the
// schema with the default the code uses.
func TestConfigExample(t *testing.T) {
	raw, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}

	// As shipped: loads, and configures exactly the defaults.
	c, err := Load("../config.toml.example")
	if err != nil {
		t.Fatalf("config.toml.example: %v", err)
	}
	shipped, err := Resolve(Settings(), c)
	if err != nil {
		t.Fatalf("config.toml.example: %v", err)
	}
	if shipped != nil {
		t.Errorf("config.toml.example as shipped: %+v, want the defaults", shipped)
	}

	// Uncommented: still the defaults (only the listeners become explicit).
	uncommented := exampleSetting.ReplaceAll(raw, []byte("$1"))
	path := writeFile(t, "config.toml", string(uncommented))
	if c, err = Load(path); err != nil {
		t.Fatalf("config.toml.example uncommented: %v", err)
	}
	got, err := Resolve(Settings(), c)
	if err != nil {
		t.Fatalf("config.toml.example uncommented: %v", err)
	}
	g, w := relayOf(got), relayOf(nil)
	if !g.ListenersExplicit || !reflect.DeepEqual(g.Listeners, relay.DefaultListeners()) {
		t.Error("uncommented listen did not make the default listeners explicit")
	}
	g.Listeners, g.ListenersExplicit = nil, false
	if !reflect.DeepEqual(g, w) {
		t.Errorf("config.toml.example uncommented: relay configuration\n got %+v\nwant %+v", g, w)
	}
	// A declared default written out may stay (limits.default_lifetime =
	// "10m" is explicit, not "follows max_lifetime"; relay.ip = "" is the
	// empty list): nothing else.
	for key := range got {
		if key != "listen" && key != "limits.default_lifetime" {
			t.Errorf("config.toml.example uncommented sets %s = %v, not its default", key, got[key])
		}
	}
	// Every declared key is there (TestDocsMatchDeclarations in package
	// config checks each default).
	for _, d := range Settings() {
		if _, ok := c[d.Key]; !ok {
			t.Errorf("config.toml.example does not document %s (as a commented-out \"# key = default\" line)", d.Key)
		}
	}
}
