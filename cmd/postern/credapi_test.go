package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/iceapi"
)

const (
	apiKey1 = "first-key-0123456789"
	apiKey2 = "second-key-0123456789"
)

// apiConfig is a server with the credentials API on loopback; %LISTEN%,
// %KEY% and %SECRET% are replaced.
const apiConfig = `
listen = ["udp://127.0.0.1:0", "tcp://127.0.0.1:0"]
realm = "api.test"
[auth]
secrets = ["%SECRET%"]
[relay]
allow_peers = ["127.0.0.0/8"]
[ice_servers]
host = "turn.example.org"
user = "default-user"
ttl = "2h"
[credentials_api]
listen = "%LISTEN%"
api_keys = ["%KEY%"]
max_ttl = "3h"
allow_origins = ["https://app.example.org"]
%TLS%
`

func writeAPIConfig(t *testing.T, path, listen, key, secret, tlsTable string) {
	t.Helper()
	text := strings.NewReplacer("%LISTEN%", listen, "%KEY%", key, "%SECRET%", secret, "%TLS%", tlsTable).Replace(apiConfig)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// post sends POST body to url with the API key (none when empty) and
// returns the status, headers and body.
func post(t *testing.T, client *http.Client, url, key, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// expiryOf returns the EXPIRY of an EXPIRY:USER username.
func expiryOf(t *testing.T, username string) time.Time {
	t.Helper()
	e, _, _ := strings.Cut(username, ":")
	n, err := strconv.ParseInt(e, 10, 64)
	if err != nil {
		t.Fatalf("username %q: %v", username, err)
	}
	return time.Unix(n, 0)
}

// TestCredentialsAPI runs serve with the API on plain HTTP on loopback: a
// credential from the API allocates; the error paths answer JSON; a reload
// rotates the API key and the minting secret.
func TestCredentialsAPI(t *testing.T) {
	path := writeFile(t, "c.toml", "")
	writeAPIConfig(t, path, "http://127.0.0.1:0", apiKey1, "secret-one", "")
	p := startInProcess(t, path)
	p.waitLog(t, "credentials API listening")
	url := logField(t, p.logs.String(), "credentials API listening", "url")
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, iceapi.Path) {
		t.Fatalf("API url %q", url)
	}
	listeners := strings.Fields(logField(t, p.logs.String(), "postern serving", "listeners"))
	udpAddr := strings.TrimPrefix(listeners[0], "udp://")
	_, udpPort, _ := strings.Cut(udpAddr, ":")
	_, tcpPort, _ := strings.Cut(strings.TrimPrefix(listeners[1], "tcp://"), ":")
	client := &http.Client{Timeout: 5 * time.Second}

	// Success: exactly RTCConfiguration, with the bound ports under
	// ice_servers.host, and a credential that allocates.
	status, hdr, body := post(t, client, url, apiKey1, `{"user":"alice","ttl":600}`)
	if status != http.StatusOK || hdr.Get("Content-Type") != "application/json" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v, body %s", status, hdr, body)
	}
	srv := decodeICEServers(t, string(body))
	wantURLs := []string{
		"stun:turn.example.org:" + udpPort, "turn:turn.example.org:" + udpPort + "?transport=udp",
		"turn:turn.example.org:" + tcpPort + "?transport=tcp",
	}
	if strings.Join(srv.URLs, " ") != strings.Join(wantURLs, " ") {
		t.Errorf("urls %q, want %q", srv.URLs, wantURLs)
	}
	checkREST(t, srv.Username, srv.Credential, "secret-one", "alice", time.Now().Add(10*time.Minute))
	mustAllocate(t, udpAddr, srv.Username, srv.Credential).exchange(t, "via api")

	// Defaults from [ice_servers]; a TTL above max_ttl is clamped.
	_, _, body = post(t, client, url, apiKey1, "")
	srv = decodeICEServers(t, string(body))
	checkREST(t, srv.Username, srv.Credential, "secret-one", "default-user", time.Now().Add(2*time.Hour))
	_, _, body = post(t, client, url, apiKey1, `{"ttl":86400}`)
	if got, want := expiryOf(t, decodeICEServers(t, string(body)).Username), time.Now().Add(3*time.Hour); got.Sub(want).Abs() > 2*time.Second {
		t.Errorf("clamped expiry %v, want about %v (max_ttl 3h)", got, want)
	}

	// Errors: JSON with a code.
	for _, c := range []struct {
		key, body string
		status    int
		code      string
	}{
		{"", "", 401, iceapi.CodeUnauthorized},
		{apiKey2, "", 401, iceapi.CodeUnauthorized},
		{apiKey1, "{bad", 400, iceapi.CodeBadRequest},
		{apiKey1, `{"ttl":-1}`, 400, iceapi.CodeBadRequest},
	} {
		status, hdr, body := post(t, client, url, c.key, c.body)
		var e struct{ Error, Message string }
		if status != c.status || hdr.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Error != c.code {
			t.Errorf("key %q body %q: status %d, body %s; want %d %q", c.key, c.body, status, body, c.status, c.code)
		}
	}

	// CORS preflight from the allowed origin.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodOptions, url, nil)
	req.Header.Set("Origin", "https://app.example.org")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.org" {
		t.Errorf("preflight: status %d, headers %v", resp.StatusCode, resp.Header)
	}

	// Reload: a new key replaces the old one, a new secret mints.
	writeAPIConfig(t, path, "http://127.0.0.1:0", apiKey2, "secret-two", "")
	if err := p.reload(t); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := post(t, client, url, apiKey1, ""); status != http.StatusUnauthorized {
		t.Errorf("old key after reload: status %d, want 401", status)
	}
	status, _, body = post(t, client, url, apiKey2, `{"user":"bob"}`)
	if status != http.StatusOK {
		t.Fatalf("new key after reload: status %d, body %s", status, body)
	}
	srv = decodeICEServers(t, string(body))
	checkREST(t, srv.Username, srv.Credential, "secret-two", "bob", time.Now().Add(2*time.Hour))
	mustAllocate(t, udpAddr, srv.Username, srv.Credential).exchange(t, "after reload")
}

// TestCredentialsAPIHTTPS: with tls.cert the API serves HTTPS with that
// certificate (the TURN listeners'), and refuses plain HTTP.
func TestCredentialsAPIHTTPS(t *testing.T) {
	now := time.Now()
	certPath, keyPath := writeCert(t, []string{"127.0.0.1", "localhost"}, now.Add(-time.Hour), now.Add(time.Hour))
	path := writeFile(t, "c.toml", "")
	writeAPIConfig(t, path, "127.0.0.1:0", apiKey1, "s", "[tls]\ncert = \""+certPath+"\"\nkey = \""+keyPath+"\"\n")
	p := startInProcess(t, path)
	p.waitLog(t, "credentials API listening")
	url := logField(t, p.logs.String(), "credentials API listening", "url")
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("API url %q, want https", url)
	}

	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("bad test certificate")
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, nil)
	req.Header.Set("Authorization", "Bearer "+apiKey1)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.StatusCode, body)
	}
	decodeICEServers(t, string(body))
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || !bytes.Equal(resp.TLS.PeerCertificates[0].Raw, block.Bytes) {
		t.Error("the API did not present the configured certificate")
	}

	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Post(strings.Replace(url, "https://", "http://", 1), "application/json", nil); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP to the HTTPS API succeeded")
		}
	}
}

// TestCredentialsAPIBusyPort: a busy API port fails the start, with nothing
// left running.
func TestCredentialsAPIBusyPort(t *testing.T) {
	p := startInProcess(t, writeFile(t, "first.toml", strings.NewReplacer("%LISTEN%", "http://127.0.0.1:0", "%KEY%", apiKey1, "%SECRET%", "s", "%TLS%", "").Replace(apiConfig)))
	url := logField(t, p.logs.String(), "credentials API listening", "url")
	hostPort := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), iceapi.Path)

	second := writeFile(t, "second.toml", strings.NewReplacer("%LISTEN%", "http://"+hostPort, "%KEY%", apiKey1, "%SECRET%", "s", "%TLS%", "").Replace(apiConfig))
	err := runServe(t, t.Context(), "--config", second)
	if err == nil || !strings.Contains(err.Error(), "credentials_api.listen") || !strings.Contains(err.Error(), hostPort) {
		t.Errorf("serve = %v, want an error naming credentials_api.listen %s", err, hostPort)
	}
}

// TestCredentialsAPIHTTPSWithACME: HTTPS for the API is accepted with an
// ACME certificate instead of certificate files, and refused with neither.
func TestCredentialsAPIHTTPSWithACME(t *testing.T) {
	api := []string{"--secret", "s", "--credentials-api", "https://127.0.0.1:8443", "--api-key", apiKey1}
	if _, err := settingsFor(t, append(api, "--acme", "--acme-domain", "turn.example.org")...); err != nil {
		t.Fatalf("HTTPS API with ACME: %v", err)
	}
	if _, err := settingsFor(t, api...); err == nil || !strings.Contains(err.Error(), "tls.acme") {
		t.Fatalf("HTTPS API without any certificate: err = %v, want one naming tls.acme", err)
	}
}
