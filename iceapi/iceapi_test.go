package iceapi

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	testKey  = "0123456789abcdef-test-key"
	otherKey = "fedcba9876543210-other-key"
)

// minted records what the handler asked the MintFunc for.
type minted struct {
	user string
	ttl  time.Duration
}

// newTestHandler returns a Handler whose MintFunc returns a fixed
// configuration naming the user and TTL it was called with, and a pointer
// to the last call.
func newTestHandler(t *testing.T, mutate func(*Config)) (*Handler, *minted) {
	t.Helper()
	last := &minted{}
	cfg := Config{
		Mint: func(user string, ttl time.Duration) (Configuration, error) {
			*last = minted{user, ttl}
			return Configuration{ICEServers: []ICEServer{{
				URLs:       []string{"stun:192.0.2.1:3478", "turn:192.0.2.1:3478?transport=udp"},
				Username:   strconv.FormatInt(int64(ttl/time.Second), 10) + ":" + user,
				Credential: "c",
			}}}, nil
		},
		Keys:        []string{testKey, otherKey},
		DefaultUser: "postern",
		DefaultTTL:  24 * time.Hour,
		MaxTTL:      48 * time.Hour,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h, last
}

// do sends one request to h and returns the recorded response.
func do(h http.Handler, method, path, body string, header map[string]string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func bearer(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }

// checkJSON asserts the common headers of every response.
func checkJSON(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
}

// errorOf decodes an error response strictly.
func errorOf(t *testing.T, rec *httptest.ResponseRecorder) errorBody {
	t.Helper()
	checkJSON(t, rec)
	var e errorBody
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if e.Error == "" || e.Message == "" {
		t.Errorf("error body %+v: want both error and message", e)
	}
	return e
}

func TestSuccess(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantUser string
		wantTTL  time.Duration
	}{
		{"no body", "", "postern", 24 * time.Hour},
		{"empty object", "{}", "postern", 24 * time.Hour},
		{"whitespace body", " \n", "postern", 24 * time.Hour},
		{"user", `{"user":"alice"}`, "alice", 24 * time.Hour},
		{"ttl", `{"ttl":3600}`, "postern", time.Hour},
		{"both", `{"user":"bob:x","ttl":60}`, "bob:x", time.Minute},
		{"nulls are absent", `{"user":null,"ttl":null}`, "postern", 24 * time.Hour},
		{"ttl clamped", `{"ttl":999999}`, "postern", 48 * time.Hour},
		{"huge ttl clamped", `{"ttl":9223372036854775807}`, "postern", 48 * time.Hour},
		{"unicode user", `{"user":"zoë"}`, "zoë", 24 * time.Hour},
	}
	h, last := newTestHandler(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, http.MethodPost, Path, tt.body, bearer(testKey))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, body %s", rec.Code, rec.Body)
			}
			checkJSON(t, rec)
			// Exactly RTCConfiguration: one member, iceServers.
			var doc map[string][]map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				t.Fatalf("%s: %v", rec.Body, err)
			}
			if len(doc) != 1 || len(doc["iceServers"]) != 1 || len(doc["iceServers"][0]) != 3 {
				t.Errorf("body %s: want {\"iceServers\":[{urls, username, credential}]}", rec.Body)
			}
			if *last != (minted{tt.wantUser, tt.wantTTL}) {
				t.Errorf("minted for %+v, want %q for %v", *last, tt.wantUser, tt.wantTTL)
			}
		})
	}
}

func TestDefaultTTLAboveMaxIsClamped(t *testing.T) {
	h, last := newTestHandler(t, func(c *Config) { c.DefaultTTL, c.MaxTTL = time.Hour, time.Minute })
	if rec := do(h, http.MethodPost, Path, "", bearer(testKey)); rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if last.ttl != time.Minute {
		t.Errorf("ttl = %v, want the 1m maximum", last.ttl)
	}
}

func TestUnauthorized(t *testing.T) {
	h, last := newTestHandler(t, nil)
	tests := []struct {
		name   string
		header map[string]string
	}{
		{"no header", nil},
		{"wrong key", bearer("0123456789abcdef-wrong")},
		{"key prefix", bearer(testKey[:len(testKey)-1])},
		{"basic scheme", map[string]string{"Authorization": "Basic " + testKey}},
		{"no scheme", map[string]string{"Authorization": testKey}},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			*last = minted{}
			// A bad body must not matter: the key is checked first.
			rec := do(h, http.MethodPost, Path, "{not json", tt.header)
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401; body %s", rec.Code, rec.Body)
			}
			if e := errorOf(t, rec); e.Error != CodeUnauthorized {
				t.Errorf("error %q, want %q", e.Error, CodeUnauthorized)
			}
			if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge (RFC 6750 §3)", got)
			}
			if *last != (minted{}) {
				t.Error("minted without a valid key")
			}
		})
	}
	// Every configured key works; the scheme is case-insensitive.
	for _, hdr := range []map[string]string{bearer(otherKey), {"Authorization": "bearer " + testKey}} {
		if rec := do(h, http.MethodPost, Path, "", hdr); rec.Code != http.StatusOK {
			t.Errorf("%v: status %d, want 200", hdr, rec.Code)
		}
	}
}

func TestBadRequest(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		code, want string // want: substring of the message
	}{
		{"not JSON", "{user", 400, CodeBadRequest, "invalid JSON body"},
		{"array", "[]", 400, CodeBadRequest, "invalid JSON body"},
		{"unknown field", `{"usr":"a"}`, 400, CodeBadRequest, `unknown field "usr"`},
		{"trailing data", `{} {}`, 400, CodeBadRequest, "data after the object"},
		{"user not a string", `{"user":7}`, 400, CodeBadRequest, "invalid JSON body"},
		{"empty user", `{"user":""}`, 400, CodeBadRequest, "empty user name"},
		{"control char in user", `{"user":"a\nb"}`, 400, CodeBadRequest, "control character"},
		{"long user", `{"user":"` + strings.Repeat("u", MaxUserLen+1) + `"}`, 400, CodeBadRequest, "limit 256"},
		{"zero ttl", `{"ttl":0}`, 400, CodeBadRequest, "positive whole number of seconds"},
		{"negative ttl", `{"ttl":-5}`, 400, CodeBadRequest, "positive whole number"},
		{"fractional ttl", `{"ttl":1.5}`, 400, CodeBadRequest, "whole number"},
		{"string ttl", `{"ttl":"1h"}`, 400, CodeBadRequest, "whole number"},
		{"too large", `{"user":"` + strings.Repeat("a", maxBody) + `"}`, 413, CodeTooLarge, "larger than 4096 bytes"},
	}
	h, _ := newTestHandler(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, http.MethodPost, Path, tt.body, bearer(testKey))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			e := errorOf(t, rec)
			if e.Error != tt.code || !strings.Contains(e.Message, tt.want) {
				t.Errorf("error %+v, want code %q and message containing %q", e, tt.code, tt.want)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	h, _ := newTestHandler(t, nil)
	rec := do(h, http.MethodPost, "/v1/ice-server", "", bearer(testKey))
	if rec.Code != http.StatusNotFound || errorOf(t, rec).Error != CodeNotFound {
		t.Errorf("other path: status %d, body %s", rec.Code, rec.Body)
	}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		rec := do(h, m, Path, "", bearer(testKey))
		if rec.Code != http.StatusMethodNotAllowed || errorOf(t, rec).Error != CodeMethodNotAllowed {
			t.Errorf("%s: status %d, body %s", m, rec.Code, rec.Body)
		}
		if allow := rec.Header().Get("Allow"); allow != "POST, OPTIONS" {
			t.Errorf("%s: Allow = %q", m, allow)
		}
	}
	// OPTIONS that is not a preflight: the allowed methods.
	rec = do(h, http.MethodOptions, Path, "", nil)
	if rec.Code != http.StatusNoContent || rec.Header().Get("Allow") != "POST, OPTIONS" {
		t.Errorf("OPTIONS: status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestMintFailure(t *testing.T) {
	h, _ := newTestHandler(t, func(c *Config) {
		c.Mint = func(string, time.Duration) (Configuration, error) { return Configuration{}, errors.New("no secret") }
	})
	rec := do(h, http.MethodPost, Path, "", bearer(testKey))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", rec.Code)
	}
	if e := errorOf(t, rec); e.Error != CodeInternal || strings.Contains(e.Message, "no secret") {
		t.Errorf("error %+v: want %q without the internal reason", e, CodeInternal)
	}
}

func TestCORS(t *testing.T) {
	const app = "https://app.example.org"
	preflight := func(origin string) map[string]string {
		return map[string]string{
			"Origin":                         origin,
			"Access-Control-Request-Method":  "POST",
			"Access-Control-Request-Headers": "authorization,content-type",
		}
	}

	t.Run("listed origin", func(t *testing.T) {
		h, _ := newTestHandler(t, func(c *Config) { c.AllowOrigins = []string{app, "http://localhost:8080"} })
		rec := do(h, http.MethodOptions, Path, "", preflight(app))
		if rec.Code != http.StatusNoContent {
			t.Fatalf("preflight status %d, body %s", rec.Code, rec.Body)
		}
		hdr := rec.Header()
		if hdr.Get("Access-Control-Allow-Origin") != app || hdr.Get("Access-Control-Allow-Methods") != "POST" ||
			!strings.Contains(hdr.Get("Access-Control-Allow-Headers"), "Authorization") ||
			hdr.Get("Access-Control-Max-Age") != "600" || hdr.Get("Vary") != "Origin" {
			t.Errorf("preflight headers %v", hdr)
		}
		// The actual request and its errors carry the origin, so the page
		// can read them.
		for _, key := range []string{testKey, "0123456789abcdef-wrong"} {
			hdr := bearer(key)
			hdr["Origin"] = app
			rec := do(h, http.MethodPost, Path, "", hdr)
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != app {
				t.Errorf("POST (status %d): Access-Control-Allow-Origin = %q, want %q", rec.Code, got, app)
			}
		}
	})

	t.Run("other origin", func(t *testing.T) {
		h, _ := newTestHandler(t, func(c *Config) { c.AllowOrigins = []string{app} })
		rec := do(h, http.MethodOptions, Path, "", preflight("https://evil.example"))
		if rec.Code != http.StatusForbidden || errorOf(t, rec).Error != CodeOriginForbidden {
			t.Errorf("preflight status %d, body %s", rec.Code, rec.Body)
		}
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin = %q for an origin not allowed", got)
		}
	})

	t.Run("any origin", func(t *testing.T) {
		h, _ := newTestHandler(t, func(c *Config) { c.AllowOrigins = []string{"*"} })
		rec := do(h, http.MethodOptions, Path, "", preflight("https://anything.example"))
		if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("preflight status %d, headers %v", rec.Code, rec.Header())
		}
		if v := rec.Header().Get("Vary"); v != "" {
			t.Errorf("Vary = %q with a wildcard origin", v)
		}
	})

	t.Run("off", func(t *testing.T) {
		h, _ := newTestHandler(t, nil)
		rec := do(h, http.MethodOptions, Path, "", preflight(app))
		if rec.Code != http.StatusForbidden {
			t.Errorf("preflight with CORS off: status %d, want 403", rec.Code)
		}
		hdr := bearer(testKey)
		hdr["Origin"] = app
		rec = do(h, http.MethodPost, Path, "", hdr)
		if rec.Code != http.StatusOK {
			t.Fatalf("POST status %d", rec.Code)
		}
		for k := range rec.Header() {
			if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
				t.Errorf("header %s set with CORS off", k)
			}
		}
	})
}

func TestNewErrors(t *testing.T) {
	mint := func(string, time.Duration) (Configuration, error) { return Configuration{}, nil }
	ok := Config{Mint: mint, Keys: []string{testKey}, DefaultUser: "u", DefaultTTL: time.Hour, MaxTTL: time.Hour}
	if _, err := New(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no mint", func(c *Config) { c.Mint = nil }, "Mint"},
		{"no key", func(c *Config) { c.Keys = nil }, "no API key"},
		{"short key", func(c *Config) { c.Keys = []string{"short"} }, "at least 16"},
		{"key with a space", func(c *Config) { c.Keys = []string{"0123456789 abcdef"} }, "space"},
		{"no default user", func(c *Config) { c.DefaultUser = "" }, "empty user"},
		{"zero ttl", func(c *Config) { c.MaxTTL = 0 }, "at least 1s"},
		{"origin with path", func(c *Config) { c.AllowOrigins = []string{"https://a.example/app"} }, "drop the path"},
		{"origin with slash", func(c *Config) { c.AllowOrigins = []string{"https://a.example/"} }, "trailing slash"},
		{"origin without scheme", func(c *Config) { c.AllowOrigins = []string{"a.example"} }, "SCHEME://HOST"},
		{"origin ftp", func(c *Config) { c.AllowOrigins = []string{"ftp://a.example"} }, "http or https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			_, err := New(c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseOriginNormalizes(t *testing.T) {
	got, err := ParseOrigin("HTTPS://App.Example.org:8443")
	if err != nil || got != "https://app.example.org:8443" {
		t.Errorf("ParseOrigin = %q, %v", got, err)
	}
}

// BenchmarkServeHTTP measures one authorized request with a body, through
// the handler alone (no network, a trivial MintFunc).
func BenchmarkServeHTTP(b *testing.B) {
	h, err := New(Config{
		Mint: func(user string, ttl time.Duration) (Configuration, error) {
			return Configuration{ICEServers: []ICEServer{{URLs: []string{"stun:192.0.2.1:3478", "turn:192.0.2.1:3478?transport=udp"}, Username: "1:" + user, Credential: "c"}}}, nil
		},
		Keys: []string{testKey, otherKey}, DefaultUser: "u", DefaultTTL: time.Hour, MaxTTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(`{"user":"alice","ttl":600}`))
		req.Header.Set("Authorization", "Bearer "+testKey)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
