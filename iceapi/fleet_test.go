package iceapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestFleetRequest: with MintRequest, a request may name a region and a
// number of servers, and MintRequest gets them with the caller's address;
// without it, those members stay unknown (400), as before fleets.
func TestFleetRequest(t *testing.T) {
	var got Request
	h, _ := newTestHandler(t, func(c *Config) {
		c.Mint = nil
		c.MintRequest = func(r Request) (Configuration, error) {
			got = r
			return Configuration{ICEServers: []ICEServer{{URLs: []string{"turn:192.0.2.1:3478"}}}}, nil
		}
	})
	rec := do(h, http.MethodPost, Path, `{"user":"ann","ttl":60,"region":"eu","servers":2}`, bearer(testKey))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if got.User != "ann" || got.TTL.Seconds() != 60 || got.Region != "eu" || got.Servers != 2 || got.Client.String() != "192.0.2.1" {
		t.Fatalf("MintRequest got %+v", got)
	}
	if rec := do(h, http.MethodPost, Path, "", bearer(testKey)); rec.Code != http.StatusOK || got.Servers != 1 || got.Region != "" {
		t.Fatalf("no body: status %d, request %+v; want 200 with 1 server, no region", rec.Code, got)
	}
	for _, body := range []string{`{"servers":0}`, `{"servers":4}`, `{"servers":"2"}`, `{"region":""}`, `{"region":"e u"}`} {
		if rec := do(h, http.MethodPost, Path, body, bearer(testKey)); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", body, rec.Code)
		}
	}

	alone, _ := newTestHandler(t, nil)
	for _, body := range []string{`{"region":"eu"}`, `{"servers":2}`} {
		rec := do(alone, http.MethodPost, Path, body, bearer(testKey))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "unknown field") {
			t.Errorf("without a fleet, %s: status %d %s, want 400 unknown field", body, rec.Code, rec.Body)
		}
	}
}

// TestUnavailable: a mint error wrapping ErrUnavailable is 503
// unavailable with Retry-After and its text; other errors stay 500.
func TestUnavailable(t *testing.T) {
	h, _ := newTestHandler(t, func(c *Config) {
		c.Mint = nil
		c.MintRequest = func(Request) (Configuration, error) {
			return Configuration{}, fmt.Errorf("%w: every node drains", ErrUnavailable)
		}
	})
	rec := do(h, http.MethodPost, Path, "", bearer(testKey))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if e := errorOf(t, rec); e.Error != CodeUnavailable || !strings.Contains(e.Message, "every node drains") {
		t.Fatalf("error %+v, want %q saying why", e, CodeUnavailable)
	}
}
