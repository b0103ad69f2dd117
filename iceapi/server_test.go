package iceapi

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"
)

// TestServer: Serve answers over plain HTTP until its context ends, then
// closes its done channel; HTTPS refuses handshakes until it has
// certificates; a nil Server (the API off) is safe.
func TestServer(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := Listen("127.0.0.1:0", true, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := s.Serve(ctx, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + s.ln.Addr().String() + Path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("body %q", body)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop after its context ended")
	}

	https, err := Listen("127.0.0.1:0", false, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer func() { cancel2(); <-done }()
	done = https.Serve(ctx2, http.NotFoundHandler())
	c, err := tls.Dial("tcp", https.ln.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only the refusal matters
	if err == nil {
		_ = c.Close()
		t.Error("HTTPS without certificates completed a handshake")
	}

	var off *Server
	off.UseCertificates(nil)
	off.Close()
	select {
	case <-off.Serve(context.Background(), nil):
	default:
		t.Error("a nil Server's done channel is not closed")
	}
}
