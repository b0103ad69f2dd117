package node

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPprofListener(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:6060", "no-port", "example.com:6060"} {
		if _, _, err := StartPprof(context.Background(), addr, log); err == nil || !strings.Contains(err.Error(), "--pprof") {
			t.Errorf("StartPprof(%q) = %v, want an error naming --pprof", addr, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bound, stop, err := StartPprof(ctx, "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, c := range []struct {
		path   string
		status int
		want   string
	}{
		{"/debug/pprof/", 200, "heap"},
		{"/debug/pprof/heap", 200, ""},
		{"/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{"/debug/pprof/profile?seconds=1", 200, ""},
		{"/debug/pprof/nonesuch", 404, ""},
	} {
		resp, err := client.Get("http://" + bound.String() + c.path)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || (c.status == 200 && len(body) == 0) || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: status %d, %d bytes; want %d containing %q", c.path, resp.StatusCode, len(body), c.status, c.want)
		}
	}
}
