package relay_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/relay"
	"github.com/postern/postern/selftest"
)

// TestPageHandler: with WebConfig.Page set, a browser on the TLS/TCP port
// gets the self-test page and can mint its credentials there; TURN is
// served as before.
func TestPageHandler(t *testing.T) {
	page, err := selftest.New(selftest.Config{Enabled: true, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, withWeb(relay.WebConfig{Page: page}))
	addr := s.addrs[relay.TCPTLS]
	// A browser offers ALPN: that is how the port tells it from TURN.
	dial := func() *tls.Conn {
		return dialTLS(t, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // self-signed
	}
	c := dial()
	resp, body := httpGet(t, c, selftest.PagePath)
	if resp.StatusCode != 200 || !strings.Contains(body, "selftest-data") || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("got %d %q, want the self-test page", resp.StatusCode, body)
	}
	expectClosed(t, c)

	c = dial()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: example\r\nContent-Length: 0\r\n\r\n", selftest.CredentialsPath); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	var cred selftest.Credentials
	if resp.StatusCode != 200 || json.Unmarshal(raw, &cred) != nil || !strings.HasSuffix(cred.Username, ":"+selftest.User) {
		t.Fatalf("minting over the TLS port: %d %q", resp.StatusCode, raw)
	}
	allocateOver(t, dialTLS(t, addr, &tls.Config{InsecureSkipVerify: true}), addr) //nolint:gosec // self-signed
}
