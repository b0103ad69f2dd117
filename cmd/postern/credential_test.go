package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"github.com/postern/postern/config"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/auth"
)

// runCmd runs "postern ARGS" in-process with stdin and returns its stdout,
// stderr and error.
func runCmd(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := newApp()
	app.Reader = strings.NewReader(stdin)
	app.Writer, app.ErrWriter = &out, &errOut
	err = app.Run(t.Context(), append([]string{"postern"}, args...))
	return out.String(), errOut.String(), err
}

// checkREST checks that username and password are a TURN REST API
// credential for user under secret, expiring within a second of want.
func checkREST(t *testing.T, username, password, secret, user string, want time.Time) {
	t.Helper()
	expiry, gotUser, ok := strings.Cut(username, ":")
	if !ok || gotUser != user {
		t.Fatalf("username %q: want EXPIRY:%s", username, user)
	}
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil || exp < want.Unix()-1 || exp > want.Unix()+1 {
		t.Errorf("expiry %q: want about %d", expiry, want.Unix())
	}
	// The server's own check: a REST password under secret at that expiry.
	u, p := auth.MintREST(secret, user, time.Unix(exp, 0).Sub(time.Unix(0, 0)), time.Unix(0, 0))
	if u != username || p != password {
		t.Errorf("credential %q/%q, want %q/%q", username, password, u, p)
	}
}

// parseKV parses credential's KEY=VALUE output (unquoted values only).
func parseKV(t *testing.T, out string) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		if !ok {
			t.Fatalf("line %q is not KEY=VALUE", line)
		}
		kv[k] = v
	}
	return kv
}

func TestCredentialText(t *testing.T) {
	t.Setenv(envSecret, "")
	out, _, err := runCmd(t, "", "credential", "--secret", "s3cret", "--user", "alice", "--ttl", "1h")
	if err != nil {
		t.Fatal(err)
	}
	kv := parseKV(t, out)
	if len(kv) != 3 {
		t.Fatalf("output %q: want username, credential, expires", out)
	}
	checkREST(t, kv["username"], kv["credential"], "s3cret", "alice", time.Now().Add(time.Hour))
	exp, err := time.Parse(time.RFC3339, kv["expires"])
	if err != nil || strconv.FormatInt(exp.Unix(), 10)+":alice" != kv["username"] {
		t.Errorf("expires %q does not match username %q (%v)", kv["expires"], kv["username"], err)
	}
}

func TestCredentialJSON(t *testing.T) {
	t.Setenv(envSecret, "")
	out, _, err := runCmd(t, "", "credential", "--secret", "s3cret", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got credentialJSON
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("output %q: want one line", out)
	}
	// The defaults: user postern, 24 h.
	checkREST(t, got.Username, got.Credential, "s3cret", config.DefaultICEUser, time.Now().Add(24*time.Hour))
	if exp, err := time.Parse(time.RFC3339, got.Expires); err != nil || !strings.HasSuffix(got.Expires, "Z") ||
		strconv.FormatInt(exp.Unix(), 10)+":postern" != got.Username {
		t.Errorf("expires %q (%v) does not match username %q", got.Expires, err, got.Username)
	}
}

// TestCredentialSecretSources: flag, then file, then environment, then the
// config file; user and TTL from [ice_servers].
func TestCredentialSecretSources(t *testing.T) {
	config := writeFile(t, "c.toml", "[auth]\nsecrets = [\"from-config\", \"old\"]\n[ice_servers]\nuser = \"cfg-user\"\nttl = \"2h\"\n")
	file := writeFile(t, "secret", "from-file\n")
	tests := []struct {
		name, env  string
		args       []string
		wantSecret string
		wantUser   string
		wantTTL    time.Duration
	}{
		{"both flags", "from-env", []string{"--secret", "from-flag", "--secret-file", file}, "", "", 0}, // refused
		{"flag", "from-env", []string{"--secret", "from-flag", "--config", config}, "from-flag", "cfg-user", 2 * time.Hour},
		{"file", "from-env", []string{"--secret-file", file, "--config", config}, "from-file", "cfg-user", 2 * time.Hour},
		{"environment", "from-env", []string{"--config", config}, "from-env", "cfg-user", 2 * time.Hour},
		{"config", "", []string{"--config", config, "--user", "bob", "--ttl", "90s"}, "from-config", "bob", 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envSecret, tt.env)
			out, _, err := runCmd(t, "", append([]string{"credential"}, tt.args...)...)
			if tt.wantSecret == "" {
				if err == nil || !strings.Contains(err.Error(), "keep one") {
					t.Errorf("err = %v, want both flags refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			kv := parseKV(t, out)
			checkREST(t, kv["username"], kv["credential"], tt.wantSecret, tt.wantUser, time.Now().Add(tt.wantTTL))
		})
	}
}

func TestCredentialErrors(t *testing.T) {
	t.Setenv(envSecret, "")
	twoLines := writeFile(t, "two", "a\nb\n")
	empty := writeFile(t, "empty", "\n")
	badConfig := writeFile(t, "bad.toml", "[ice_servers]\nttl = \"0.5s\"\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no secret", nil, "no secret"},
		{"empty secret", []string{"--secret", ""}, "empty"},
		{"missing file", []string{"--secret-file", "/nonexistent/secret"}, "no such file"},
		{"two lines", []string{"--secret-file", twoLines}, "more than one line"},
		{"empty file", []string{"--secret-file", empty}, "empty"},
		{"short ttl", []string{"--secret", "s", "--ttl", "500ms"}, "at least 1s"},
		{"bad user", []string{"--secret", "s", "--user", "a\tb"}, "control character"},
		{"argument", []string{"--secret", "s", "extra"}, "no arguments"},
		{"bad config", []string{"--config", badConfig}, "ice_servers.ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCmd(t, "", append([]string{"credential"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
			if out != "" {
				t.Errorf("stdout = %q on error", out)
			}
		})
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", 90 * time.Minute: "1h30m", 10 * time.Minute: "10m", 90 * time.Second: "1m30s", time.Hour + time.Second: "1h0m1s"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"1767312000:alice": "1767312000:alice",
		"3XaZ6k0f+/q3x=":   "3XaZ6k0f+/q3x=",
		"a b":              "'a b'",
		"it's":             `'it'\''s'`,
		"":                 "''",
		"$(x)":             "'$(x)'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCredentialHash(t *testing.T) {
	cfg := writeFile(t, "c.toml", "realm = \"from.config\"\n")
	tests := []struct {
		name, stdin   string
		args          []string
		user, realm   string
		wantPassword  string
		wantErrSubstr string
	}{
		{name: "default realm", stdin: "wonderland\n", args: []string{"--user", "alice"}, user: "alice", realm: config.DefaultRealm, wantPassword: "wonderland"},
		{name: "explicit realm, CRLF", stdin: "pass word\r\n", args: []string{"--user", "bob", "--realm", "turn.example.org"}, user: "bob", realm: "turn.example.org", wantPassword: "pass word"},
		{name: "no newline", stdin: "x:y", args: []string{"--user", "c", "--config", cfg}, user: "c", realm: "from.config", wantPassword: "x:y"},
		{name: "flag beats config", stdin: "p\n", args: []string{"--user", "c", "--config", cfg, "--realm", "r2"}, user: "c", realm: "r2", wantPassword: "p"},
		{name: "no password", stdin: "", args: []string{"--user", "a"}, wantErrSubstr: "no password"},
		{name: "empty line", stdin: "\n", args: []string{"--user", "a"}, wantErrSubstr: "no password"},
		{name: "two lines", stdin: "a\nb\n", args: []string{"--user", "a"}, wantErrSubstr: "more than one line"},
		{name: "no user", stdin: "p\n", wantErrSubstr: "--user NAME"},
		{name: "colon in user", stdin: "p\n", args: []string{"--user", "a:b"}, wantErrSubstr: "':'"},
		{name: "comment user", stdin: "p\n", args: []string{"--user", "#a"}, wantErrSubstr: "comment"},
		{name: "blank around user", stdin: "p\n", args: []string{"--user", " a"}, wantErrSubstr: "blank"},
		{name: "quote in realm", stdin: "p\n", args: []string{"--user", "a", "--realm", `x"y`}, wantErrSubstr: "realm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCmd(t, tt.stdin, append([]string{"credential", "hash"}, tt.args...)...)
			if tt.wantErrSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
					t.Errorf("err = %v, want one containing %q", err, tt.wantErrSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.user + ":0x" + hex.EncodeToString(auth.LongTermKey(tt.user, tt.realm, tt.wantPassword)) + "\n"
			if out != want {
				t.Errorf("output %q, want %q", out, want)
			}
			// The line is what a users file takes.
			users, keys, err := auth.LoadUsersFile(writeFile(t, "users", out))
			if err != nil || len(users) != 0 || !bytes.Equal(keys[tt.user], auth.LongTermKey(tt.user, tt.realm, tt.wantPassword)) {
				t.Errorf("users file from %q: users %v keys %x err %v", out, users, keys, err)
			}
		})
	}
}
