package config

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v3"

	"github.com/postern/postern/relay"
)

// knob is a throwaway declaration: one entry, and it has a flag, a TOML
// key, validation, a restart rule, a place in relay.Config, and the docs
// test asks for its README row and example line.
func knob() []Setting {
	return []Setting{{
		Key: "web.quic_knob", Flag: "web-quic-knob", Kind: KindInt, Default: 7,
		Placeholder: "N", Usage: "at most N knobs", Category: CategoryWeb, Restart: true,
		Check: flowCap,
		Set:   func(c *relay.Config, v any) { c.QUIC.MaxFlows = v.(int) },
	}}
}

// parse runs a command with flags from decls and returns FromFlags' values.
func parse(t *testing.T, decls []Setting, args ...string) Values {
	t.Helper()
	v := Values{}
	cmd := &cli.Command{Name: "x", Flags: Flags(decls),
		Action: func(_ context.Context, cmd *cli.Command) error { FromFlags(decls, cmd, v); return nil }}
	if err := cmd.Run(context.Background(), append([]string{"x"}, args...)); err != nil {
		t.Fatal(err)
	}
	return v
}

func decode(t *testing.T, decls []Setting, text string) (Values, error) {
	t.Helper()
	var doc map[string]any
	if _, err := toml.Decode(text, &doc); err != nil {
		t.Fatal(err)
	}
	return FromTOML(decls, doc)
}

func TestOneDeclarationReachesEverything(t *testing.T) {
	decls := knob()

	// Flag, with its default in --help.
	f := Flags(decls)[0].(*cli.IntFlag)
	if f.Name != "web-quic-knob" || f.Value != 7 || f.Category != CategoryWeb || f.Usage != "at most `N` knobs" {
		t.Errorf("flag = %+v", f)
	}
	if v := parse(t, decls, "--web-quic-knob", "9"); v["web.quic_knob"] != 9 {
		t.Errorf("flag value = %v", v)
	}
	if v := parse(t, decls); len(v) != 0 {
		t.Errorf("no flag: %v, want nothing (the file's value stays)", v)
	}

	// TOML, strict about the type.
	v, err := decode(t, decls, "[web]\nquic_knob = 5\n")
	if err != nil || v["web.quic_knob"] != 5 {
		t.Errorf("TOML = %v, %v", v, err)
	}
	if _, err := decode(t, decls, "[web]\nquic_knob = \"5\"\n"); err == nil || !strings.Contains(err.Error(), "web.quic_knob") {
		t.Errorf("TOML string for an int: %v", err)
	}
	if !Declared(decls, toml.Key{"web", "quic_knob"}) || !slices.Equal(KeysIn(decls, "web"), []string{"quic_knob"}) {
		t.Error("the key is not known to the strict decoder's key lists")
	}

	// Validation (what check-config reports), then the relay's config.
	if _, err := Resolve(decls, Values{"web.quic_knob": 0}); err == nil || !strings.HasPrefix(err.Error(), "web.quic_knob (--web-quic-knob): ") {
		t.Errorf("Resolve(0) = %v", err)
	}
	r, err := Resolve(decls, v)
	if err != nil {
		t.Fatal(err)
	}
	var c relay.Config
	Apply(decls, r, &c)
	if c.QUIC.MaxFlows != 5 {
		t.Errorf("relay.Config.QUIC.MaxFlows = %d", c.QUIC.MaxFlows)
	}
	Apply(decls, nil, &c)
	if c.QUIC.MaxFlows != 7 {
		t.Errorf("default: relay.Config.QUIC.MaxFlows = %d", c.QUIC.MaxFlows)
	}

	// Reload: restart-only, so a change is named and the running value kept.
	if got := RestartChanged(decls, nil, r); !slices.Equal(got, []string{"web.quic_knob"}) {
		t.Errorf("RestartChanged = %v", got)
	}
	if got := TakeReloadable(decls, nil, r); got != nil {
		t.Errorf("TakeReloadable took a restart-only value: %v", got)
	}

	// Docs: missing until README and the example have it.
	if p := checkDocs(decls, "", ""); len(p) != 2 {
		t.Errorf("undocumented declaration: %q, want a README and an example problem", p)
	}
	readme := "| `--web-quic-knob N` | `[web] quic_knob` | `7` | at most N knobs |\n"
	example := "[web]\n# quic_knob = 7\n"
	if p := checkDocs(decls, readme, example); len(p) != 0 {
		t.Errorf("documented declaration: %q", p)
	}
	if p := checkDocs(nil, readme, example); len(p) != 2 {
		t.Errorf("documented, not declared: %q, want 2 problems", p)
	}
}

func TestReloadableDeclaration(t *testing.T) {
	decls := knob()
	decls[0].Restart = false
	loaded := Values{"web.quic_knob": 5}
	if got := RestartChanged(decls, nil, loaded); len(got) != 0 {
		t.Errorf("RestartChanged = %v", got)
	}
	if got := TakeReloadable(decls, nil, loaded); got["web.quic_knob"] != 5 {
		t.Errorf("TakeReloadable = %v", got)
	}
}

func TestQUICSettings(t *testing.T) {
	decls := Settings()
	var c relay.Config
	Apply(decls, nil, &c)
	want := relay.QUICConfig{IdleTimeout: 2 * time.Minute, MaxFlows: 4096, MaxFlowsPerClient: 256}
	if c.QUIC != want {
		t.Errorf("defaults: %+v, want %+v", c.QUIC, want)
	}

	v, err := decode(t, decls, `[web]
quic_backend = "127.0.0.1:8443"
quic_backend_proxy_protocol = true
quic_idle_timeout = "90s"
quic_max_flows = -1
quic_max_flows_per_client = 8
`)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(decls, v)
	if err != nil {
		t.Fatal(err)
	}
	Apply(decls, r, &c)
	want = relay.QUICConfig{Backend: "127.0.0.1:8443", BackendProxyProtocol: true, IdleTimeout: 90 * time.Second, MaxFlows: -1, MaxFlowsPerClient: 8}
	if c.QUIC != want {
		t.Errorf("set: %+v, want %+v", c.QUIC, want)
	}

	for _, tc := range []struct {
		v    Values
		want string
	}{
		{Values{"web.quic_backend": "8443"}, "web.quic_backend (--web-quic-backend): \"8443\": write HOST:PORT"},
		{Values{"web.quic_backend": ":8443"}, "name the host"},
		{Values{"web.quic_backend": "127.0.0.1:0"}, "1-65535"},
		{Values{"web.quic_backend_proxy_protocol": true}, "web.quic_backend_proxy_protocol (--web-quic-backend-proxy-protocol) is set but web.quic_backend (--web-quic-backend) is not"},
		{Values{"web.quic_idle_timeout": time.Duration(0)}, "web.quic_idle_timeout (--web-quic-idle-timeout): 0s: write a positive duration"},
		{Values{"web.quic_max_flows": 0}, "web.quic_max_flows (--web-quic-max-flows): 0: write a positive count"},
		{Values{"web.quic_max_flows_per_client": 0}, "web.quic_max_flows_per_client"},
	} {
		if _, err := Resolve(decls, tc.v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Resolve(%v) = %v, want %q", tc.v, err, tc.want)
		}
	}
	if _, err := decode(t, decls, "[web]\nquic_idle_timeout = 120\n"); err == nil || !strings.Contains(err.Error(), `"10m"`) {
		t.Errorf("bare number duration: %v", err)
	}
}

// TestRestartChangedNamesEachKey: reload is data. Each restart-only change
// is named by its key, in declaration order; lists and tables compare by
// content (== on them would panic); a reloadable setting is taken, one that
// reloads with a restart-only one only while that one is unchanged.
func TestRestartChangedNamesEachKey(t *testing.T) {
	decls := Settings()
	for _, tc := range []struct {
		loaded Values
		want   string
	}{
		{Values{"admin.listen": "127.0.0.1:9999"}, "admin.listen"},
		{Values{"limits.ip_quota": 3}, "limits.ip_quota"},
		{Values{"drain.timeout": time.Second}, "drain.timeout"},
		{Values{"tls.acme": true}, "tls.acme"},
		{Values{"relay.stun_servers": []string{"192.0.2.1:3478"}}, "relay.stun_servers"},
		{Values{"relay.external_ip": []string{"auto"}}, "relay.external_ip"},
		{Values{"log.format": "json"}, "log.format"},
		{Values{"listen": []string{"udp://:1"}, "limits.user_quota": 5}, "listen limits.user_quota"},
		{Values{"auth.users": map[string]string{"a": "b"}, "relay.allow_peers": []string{"10.0.0.0/8"}}, ""},
		{Values{"credentials_api.api_keys": []string{"0123456789abcdef"}}, ""},
		{nil, ""},
	} {
		if got := strings.Join(RestartChanged(decls, nil, tc.loaded), " "); got != tc.want {
			t.Errorf("RestartChanged(%v) = %q, want %q", tc.loaded, got, tc.want)
		}
	}
	// The same list in a fresh slice is no change.
	running := Values{"relay.stun_servers": []string{"192.0.2.1:3478"}, "auth.users": map[string]string{"a": "b"}}
	loaded := Values{"relay.stun_servers": []string{"192.0.2.1:3478"}, "auth.users": map[string]string{"a": "b"}}
	if got := RestartChanged(decls, running, loaded); len(got) != 0 {
		t.Errorf("equal lists: RestartChanged = %v", got)
	}

	users := map[string]string{"bob": "builder"}
	next := TakeReloadable(decls, Values{"auth.users": map[string]string{"a": "b"}, "relay.ports": "50000-50010"},
		Values{"auth.users": users, "auth.nonce_lifetime": 90 * time.Second, "relay.ports": "40000-40010"})
	if !Equal(next["auth.users"], users) || NonceLifetime(next) != 90*time.Second || next["relay.ports"] != "50000-50010" {
		t.Errorf("TakeReloadable = %v: want the new users and nonce lifetime, the running ports", next)
	}

	// The API's keys follow only while its listen address is unchanged.
	api := Values{"credentials_api.listen": "http://127.0.0.1:1", "credentials_api.api_keys": []string{"0123456789abcdef"}}
	newKeys := Values{"credentials_api.listen": "http://127.0.0.1:1", "credentials_api.api_keys": []string{"fedcba9876543210"}}
	if got := TakeReloadable(decls, api, newKeys); !Equal(got["credentials_api.api_keys"], newKeys["credentials_api.api_keys"]) {
		t.Errorf("same listen: keys %v, want the new ones", got["credentials_api.api_keys"])
	}
	moved := Values{"credentials_api.listen": "http://127.0.0.1:2", "credentials_api.api_keys": []string{"fedcba9876543210"}}
	if got := TakeReloadable(decls, api, moved); !Equal(got["credentials_api.api_keys"], api["credentials_api.api_keys"]) {
		t.Errorf("new listen: keys %v, want the running ones (they go with the address)", got["credentials_api.api_keys"])
	}
}

// TestEqual: lists and tables by content, never a panic.
func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		a, b any
		want bool
	}{
		{[]string{"a"}, []string{"a"}, true},
		{[]string{"a"}, []string{"b"}, false},
		{[]string(nil), []string{}, true},
		{map[string]string{"a": "1"}, map[string]string{"a": "1"}, true},
		{map[string]string{"a": "1"}, map[string]string{"a": "2"}, false},
		{[]string{"a"}, "a", false},
		{"a", []string{"a"}, false},
		{3, 3, true},
	} {
		if got := Equal(tc.a, tc.b); got != tc.want {
			t.Errorf("Equal(%v, %v) = %v", tc.a, tc.b, got)
		}
	}
}

// TestAddedDeclarationReachesEverything appends one throwaway declaration
// to the real ones and follows it: it gets a repeatable flag, is read from
// TOML (and is no longer an unknown key), is validated on check-config's
// path with its line, and the docs check names it as missing from README
// and config.toml.example.
func TestAddedDeclarationReachesEverything(t *testing.T) {
	knob := Setting{
		Key: "web.knob_hosts", Flag: "knob-host", Kind: KindStrings, Default: []string(nil), DocDefault: "none",
		Placeholder: "NAME", Category: CategoryWeb, Restart: true,
		Usage: "knob host NAME (replaces the file's list)",
		Check: func(v any) error { _, err := hostNames(v.([]string)); return err },
	}
	decls := append(Settings(), knob)

	// The flag, repeatable, replacing the file's list.
	var flag *cli.StringSliceFlag
	for _, f := range Flags(decls) {
		if sf, ok := f.(*cli.StringSliceFlag); ok && sf.Name == "knob-host" {
			flag = sf
		}
	}
	if flag == nil || flag.Category != CategoryWeb || flag.Usage != "knob host `NAME` (replaces the file's list)" {
		t.Fatalf("flag = %+v", flag)
	}
	if v := parse(t, decls, "--knob-host", "a.example", "--knob-host", "b.example"); !Equal(v["web.knob_hosts"], []string{"a.example", "b.example"}) {
		t.Errorf("flag values = %v", v)
	}

	// TOML: read with the declaration, an unknown key without it.
	file := "[web]\nbackend = \"127.0.0.1:8443\"\nknob_hosts = [\"a.example\"]\n"
	v, problems, err := read(decls, file)
	if err != nil || len(problems) != 0 || !Equal(v["web.knob_hosts"], []string{"a.example"}) {
		t.Errorf("read = %v, %v, %v", v, problems, err)
	}
	if _, problems, _ := read(Settings(), file); len(problems) != 1 || !strings.HasPrefix(problems[0].Msg, "unknown key web.knob_hosts (keys in [web]: backend,") {
		t.Errorf("undeclared: %v", problems)
	}
	if _, problems, _ := read(decls, "[web]\nknob_hosts = \"a.example\"\n"); len(problems) != 1 ||
		!strings.HasPrefix(problems[0].Msg, "web.knob_hosts: wrong type: write an array of strings") {
		t.Errorf("a string for a list: %v", problems)
	}

	// check-config's path: validated, with the line, and a valid file OK.
	dir := t.TempDir()
	bad := dir + "/bad.toml"
	if err := os.WriteFile(bad, []byte("[auth]\nsecrets = [\"s\"]\n[web]\n\nknob_hosts = [\"https://a.example/\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := check(decls, bad); len(r.Problems) != 1 || !strings.HasPrefix(r.Problems[0], bad+":5: web.knob_hosts (--knob-host): ") {
		t.Errorf("check-config problems %q", r.Problems)
	}
	good := dir + "/good.toml"
	if err := os.WriteFile(good, []byte("[auth]\nsecrets = [\"s\"]\n[web]\nknob_hosts = [\"A.example.\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := check(decls, good); len(r.Problems) != 0 || r.Summary == "" {
		t.Errorf("check-config of a valid file: %q", r.Problems)
	}

	// Docs: the real README and example do not have it yet.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	got := checkDocs(decls, string(readme), string(example))
	want := []string{"README: no flag table row for web.knob_hosts", `config.toml.example: no "# web.knob_hosts = []" line`}
	if !slices.Equal(got, want) {
		t.Errorf("docs check = %q, want %q", got, want)
	}
	withRow := string(readme) + "\n| `--knob-host NAME` (repeatable) | `[web] knob_hosts` | none | knob hosts |\n"
	withLine := string(example) + "\n[web]\n# knob_hosts = []\n"
	if got := checkDocs(decls, withRow, withLine); len(got) != 0 {
		t.Errorf("documented: %q", got)
	}
}
