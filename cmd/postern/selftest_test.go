package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/selftest"
)

// selftestConfig is a server with a tcp+tls listener (the 443 role), the
// credentials API and, when %SELFTEST% says so, the self-test page.
const selftestConfig = `
listen = ["udp://127.0.0.1:0", "tcp+tls://127.0.0.1:0"]
[auth]
secrets = ["%SECRET%"]
[relay]
allow_peers = ["127.0.0.0/8"]
[credentials_api]
listen = "http://127.0.0.1:0"
api_keys = ["selftest-api-key-0123456789"]
%SELFTEST%
`

func writeSelftestConfig(t *testing.T, path, secret, selftestTable string) {
	t.Helper()
	text := strings.NewReplacer("%SECRET%", secret, "%SELFTEST%", selftestTable).Replace(selftestConfig)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fetch sends method to url, over TLS as a browser would, and returns the
// status and body.
func fetch(t *testing.T, method, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// A browser's ALPN (TLS without it is TURN); the certificate is
		// self-signed.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}, //nolint:gosec // self-signed
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// selftestServer starts serve with selftestConfig and returns it with the
// base URLs of its tcp+tls listener and of its credentials API, and the
// address of its UDP listener.
func selftestServer(t *testing.T, path string) (p *inProcess, page, api, udp string) {
	t.Helper()
	p = startInProcess(t, path)
	p.waitLog(t, "credentials API listening")
	for _, l := range strings.Fields(logField(t, p.logs.String(), "postern serving", "listeners")) {
		if a, ok := strings.CutPrefix(l, "tcp+tls://"); ok {
			page = "https://" + a
		}
		if a, ok := strings.CutPrefix(l, "udp://"); ok {
			udp = a
		}
	}
	api, _, _ = strings.Cut(logField(t, p.logs.String(), "credentials API listening", "url"), "/v1/")
	return p, page, api, udp
}

// mintSelftest asks url for self-test credentials and checks their form.
func mintSelftest(t *testing.T, url string) selftest.Credentials {
	t.Helper()
	status, body := fetch(t, http.MethodPost, url+selftest.CredentialsPath)
	var c selftest.Credentials
	if status != http.StatusOK || json.Unmarshal([]byte(body), &c) != nil {
		t.Fatalf("POST %s%s: %d %q, want 200 and credentials", url, selftest.CredentialsPath, status, body)
	}
	if !strings.HasSuffix(c.Username, ":"+selftest.User) || c.TTLSeconds != 120 {
		t.Errorf("credentials %+v, want user %s and ttl 120 s (selftest.ttl)", c, selftest.User)
	}
	return c
}

const selftestTitle = "<title>Postern connectivity self-test</title>"

// TestServeSelftest: with [selftest] enabled, `postern serve` shows the
// self-test page on its tcp+tls listener and on /test of the credentials
// API, both mint credentials that relay, and a reload that rotates the
// secret rotates the self-test's.
func TestServeSelftest(t *testing.T) {
	path := writeFile(t, "c.toml", "")
	table := "[selftest]\nenabled = true\nttl = \"2m\"\nburst = 10\n"
	writeSelftestConfig(t, path, "selftest-one", table)
	p, page, api, udp := selftestServer(t, path)

	for _, url := range []string{page + "/", page + "/any/path", api + selftest.PagePath} {
		status, body := fetch(t, http.MethodGet, url)
		if status != http.StatusOK || !strings.Contains(body, selftestTitle) || !strings.Contains(body, `"enabled":true`) {
			t.Errorf("GET %s: %d, want the enabled self-test page:\n%.300s", url, status, body)
		}
	}
	for _, url := range []string{page, api} {
		c := mintSelftest(t, url)
		mustAllocate(t, udp, c.Username, c.Credential).exchange(t, "selftest")
	}

	// Rotate: the old secret goes; what the page mints now allocates,
	// which only the new secret can verify.
	writeSelftestConfig(t, path, "selftest-two", table)
	if err := p.reload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	c := mintSelftest(t, page)
	mustAllocate(t, udp, c.Username, c.Credential).exchange(t, "rotated")
}

// TestServeSelftestOff: without [selftest] the tcp+tls listener shows the
// short built-in page on every path, /test/credentials mints nothing, and
// the credentials API has no /test.
func TestServeSelftestOff(t *testing.T) {
	path := writeFile(t, "c.toml", "")
	writeSelftestConfig(t, path, "selftest-one", "")
	_, page, api, _ := selftestServer(t, path)

	for _, method := range []string{http.MethodGet, http.MethodPost} {
		status, body := fetch(t, method, page+selftest.CredentialsPath)
		if status != http.StatusOK || !strings.HasPrefix(body, "This is a Postern STUN/TURN relay") {
			t.Errorf("%s %s: %d %q, want the built-in text", method, selftest.CredentialsPath, status, body)
		}
	}
	for _, path := range []string{selftest.PagePath, selftest.CredentialsPath} {
		if status, body := fetch(t, http.MethodPost, api+path); status != http.StatusNotFound {
			t.Errorf("API POST %s: %d %q, want 404", path, status, body)
		}
	}
}

// TestSelftestSettings: the [selftest] keys and flags reach the settings,
// and a self-test that could not mint is refused (serve, check-config and
// reload all read settings).
func TestSelftestSettings(t *testing.T) {
	path := writeFile(t, "c.toml", "[selftest]\nenabled = true\nrate = 0.5\n[auth]\nsecrets = [\"s\"]\n")
	s, err := settingsFor(t, "--config", path, "--selftest-burst", "7")
	if err != nil {
		t.Fatal(err)
	}
	if s["selftest.enabled"] != true || s["selftest.rate"] != 0.5 || s["selftest.burst"] != 7 {
		t.Errorf("settings = %v", s)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--selftest", "--user", "alice:pw"}, "needs a REST secret: add one to auth.secrets (--secret)"},
		{[]string{"--selftest-ttl", "1m"}, "selftest.enabled (--selftest) is not"},
		{[]string{"--selftest", "--selftest-ttl", "2h"}, "selftest.ttl (--selftest-ttl) 2h0m0s: write a duration above 0 and at most 1h0m0s"},
		{[]string{"--selftest", "--selftest-rate", "0"}, "selftest.rate (--selftest-rate) 0: write credentials per second above 0"},
		{[]string{"--selftest", "--selftest-burst", "0"}, "selftest.burst (--selftest-burst) 0: write a count of 1 or more"},
	} {
		if _, err := settingsFor(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	// With nothing configured the generated secret mints.
	if _, err := settingsFor(t, "--selftest"); err != nil {
		t.Errorf("--selftest alone: %v", err)
	}
}
