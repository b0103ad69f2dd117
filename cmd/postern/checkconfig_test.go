package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for names (DNS names or IP
// addresses), valid from
// notBefore to notAfter, and its key, and returns the two paths.
func writeCert(t *testing.T, names []string, notBefore, notAfter time.Time) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "postern test"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func TestCheckConfigProblems(t *testing.T) {
	now := time.Now()
	goodCert, goodKey := writeCert(t, []string{"turn.example.org"}, now.Add(-time.Hour), now.Add(365*24*time.Hour))
	oldCert, oldKey := writeCert(t, []string{"turn.example.org"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	tests := []struct {
		name string
		toml string
		want []string // each must appear in the output, in order of the problems
	}{
		{"syntax", "realm = \"r\"\n\n[auth]\nsecrets = [\"a\"\n", []string{":4:", "auth.secrets: column 15: expected a comma"}},
		{"missing value", "realm = \n", []string{":1:", "realm: column 9: expected value"}},
		{"duplicate key", "realm = \"a\"\nrealm = \"b\"\n", []string{":2:", "already been defined"}},
		{"duration as number", "[limits]\n# a comment\nmax_lifetime = 3600\n", []string{":3:", "limits.max_lifetime", `"3600" is not a duration`, `"10m"`}},
		{"wrong type, list", "listen = \"udp://:3478\"\n", []string{":1:", "listen: wrong type: write an array of strings"}},
		{"wrong type, int", "[limits]\nuser_quota = \"3\"\n", []string{":2:", "limits.user_quota: wrong type: write a whole number"}},
		{"unknown keys with lines", "realm = \"r\"\n[relay]\nport = \"1-2\"\n\n[limits]\nquota = 1\n", []string{
			":3: unknown key relay.port (keys in [relay]:", ":6: unknown key limits.quota"}},
		{"unknown table", "[metrics]\nlisten = \"x\"\n", []string{":1: unknown key metrics"}},
		{"dotted unknown key", "relay.porst = \"1-2\"\n", []string{":1: unknown key relay.porst"}},
		{"bad value", "[relay]\nip = \"192.0.2.1\"\n\nports = \"60000-50000\"\n", []string{":4: relay.ports (--relay-ports)", "write LOW-HIGH"}},
		{"bad value in inline table", "[auth]\nusers = { \"\" = \"x\" }\n", []string{":2: auth.users"}},
		{"bad value against a default", "[limits]\n\ndefault_lifetime = \"2h\"\n", []string{":3: limits.default_lifetime", "> limits.max_lifetime"}},
		{"users file", "[auth]\nusers_file = \"/nonexistent/users\"\n", []string{":2: auth.users_file", "no such file"}},
		{"api plain http on a public address", "[credentials_api]\nlisten = \"http://0.0.0.0:8080\"\napi_keys = [\"0123456789abcdef\"]\n", []string{":2: credentials_api.listen", "loopback"}},
		{"api https without certificate", "[credentials_api]\nlisten = \":8443\"\napi_keys = [\"0123456789abcdef\"]\n", []string{":2: credentials_api.listen", "tls.cert"}},
		{"api short key", "[credentials_api]\nlisten = \"http://127.0.0.1:8080\"\napi_keys = [\"short\"]\n", []string{":3: credentials_api.api_keys", "at least 16"}},
		{"api key without listen", "[credentials_api]\napi_keys = [\"0123456789abcdef\"]\n", []string{"credentials_api.listen", "is empty"}},
		{"api origin", "[credentials_api]\nlisten = \"http://127.0.0.1:8080\"\napi_keys = [\"0123456789abcdef\"]\nallow_origins = [\"https://a.example/\"]\n", []string{":4: credentials_api.allow_origins", "trailing slash"}},
		{"api without secrets", "[auth]\nusers = { a = \"b\" }\n[credentials_api]\nlisten = \"http://127.0.0.1:8080\"\napi_keys = [\"0123456789abcdef\"]\n", []string{":4: credentials_api.listen", "auth.secrets"}},
		{"ice host", "[ice_servers]\nhost = \"turn.example.org:3478\"\n", []string{":2: ice_servers.host", "without scheme or port"}},
		{"ttl above max", "[ice_servers]\nttl = \"72h\"\n[credentials_api]\nlisten = \"http://[::1]:1\"\napi_keys = [\"0123456789abcdef\"]\n", []string{":2: ice_servers.ttl", "credentials_api.max_ttl"}},
		{"several problems", "[relay]\nports = \"60000-50000\"\n[limits]\nuser_quota = -1\n[credentials_api]\nlisten = \"http://0.0.0.0:1\"\napi_keys = [\"0123456789abcdef\"]\n",
			[]string{":2: relay.ports", ":4: limits.user_quota", ":6: credentials_api.listen"}},
		{"certificate mismatch", "[tls]\ncert = \"" + goodCert + "\"\nkey = \"" + oldKey + "\"\n", []string{":2: tls.cert / tls.key", "private key does not match"}},
		{"expired certificate", "[tls]\ncert = \"" + oldCert + "\"\nkey = \"" + oldKey + "\"\n", []string{":2: tls.cert", "expired"}},
	}
	_ = goodKey
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "c.toml", tt.toml)
			out, errOut, err := runCmd(t, "", "check-config", path)
			if err == nil || !strings.Contains(err.Error(), "problem") {
				t.Fatalf("err = %v, want problems; stderr:\n%s", err, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q for an invalid file", out)
			}
			rest := errOut
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (after the previous match); stderr:\n%s", w, errOut)
				}
				rest = rest[i+len(w):]
			}
			for line := range strings.Lines(errOut) {
				if !strings.HasPrefix(line, path+":") {
					t.Errorf("line %q does not start with the file name", line)
				}
			}
		})
	}
}

func TestCheckConfigValid(t *testing.T) {
	now := time.Now()
	cert, key := writeCert(t, []string{"turn.example.org"}, now.Add(-time.Hour), now.Add(7*24*time.Hour))
	path := writeFile(t, "c.toml", `
listen = ["udp://:3478"]
realm = "turn.example.org"
[auth]
secrets = ["s"]
[tls]
cert = "`+cert+`"
key = "`+key+`"
[ice_servers]
host = "other.example.org"
[credentials_api]
listen = "https://:8443"
api_keys = ["0123456789abcdef"]
`)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runCmd(t, "", "check-config", "--config", path)
	if err != nil {
		t.Fatalf("err = %v; stderr:\n%s", err, errOut)
	}
	if want := path + ": OK: listeners udp://:3478; realm \"turn.example.org\"; 0 users, 1 secrets; credentials API https://:8443\n"; out != want {
		t.Errorf("stdout\n got %q\nwant %q", out, want)
	}
	for _, w := range []string{"warning: mode 0644", "chmod 600", "expires on", "does not cover ice_servers.host other.example.org"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}

	// The shipped example is valid.
	if out, errOut, err := runCmd(t, "", "check-config", "../../config.toml.example"); err != nil || !strings.Contains(out, ": OK: ") {
		t.Errorf("config.toml.example: %v\n%s%s", err, out, errOut)
	}
}

func TestCheckConfigUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"a", "b"}, {"a", "--config", "b"}} {
		if _, _, err := runCmd(t, "", append([]string{"check-config"}, args...)...); err == nil {
			t.Errorf("check-config %q succeeded", args)
		}
	}
	if _, errOut, err := runCmd(t, "", "check-config", "/nonexistent/c.toml"); err == nil || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: %v, %q", err, errOut)
	}
}

// TestCheckConfigAllowPeerWarnings: allow_peers entries that cover the
// IPv6 forms carrying IPv4 addresses (6to4, NAT64, IPv4-compatible) are
// warned about, since they re-open the IPv4 ranges denied by default;
// ordinary ranges are not.
func TestCheckConfigAllowPeerWarnings(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   string // in the warning; "" for none
	}{
		{"::/0", "6to4 (2002::/16"},
		{"2000::/3", "6to4 (2002::/16"},
		{"2002:7f00::/24", "6to4 (2002::/16"},
		{"64:ff9b::/96", "NAT64 (64:ff9b::/96"},
		{"64:ff9b::/32", "NAT64 (64:ff9b::/96"},
		{"::/64", "IPv4-compatible"},
		{"10.0.0.0/8", ""},
		{"2001:4860::/32", ""},
		{"2600::/12", ""},
		{"::ffff:10.0.0.0/104", ""},
	} {
		path := writeFile(t, "c.toml", "[auth]\nsecrets = [\"s\"]\n[relay]\nallow_peers = [\""+tc.prefix+"\"]\n")
		_, errOut, err := runCmd(t, "", "check-config", path)
		if err != nil {
			t.Fatalf("%s: err = %v; stderr:\n%s", tc.prefix, err, errOut)
		}
		warned := strings.Contains(errOut, "relay.allow_peers "+tc.prefix+" covers")
		switch {
		case tc.want == "" && warned:
			t.Errorf("%s: unexpected warning:\n%s", tc.prefix, errOut)
		case tc.want != "" && (!warned || !strings.Contains(errOut, tc.want)):
			t.Errorf("%s: no warning naming %q:\n%s", tc.prefix, tc.want, errOut)
		}
	}
}
