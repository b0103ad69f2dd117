package selftest_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/probe"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/selftest"
)

const testSecret = "selftest-secret"

func newHandler(t *testing.T, cfg selftest.Config) *selftest.Handler {
	t.Helper()
	h, err := selftest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// post asks h for credentials from remote.
func post(h http.Handler, remote string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, selftest.CredentialsPath, nil)
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func creds(t *testing.T, rec *httptest.ResponseRecorder) selftest.Credentials {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var c selftest.Credentials
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// pageData fetches the page from h with Host host and decodes its blob.
func pageData(t *testing.T, h http.Handler, host string) (string, selftest.PageData) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, selftest.PagePath, nil)
	req.Host = host
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("page: status %d", rec.Code)
	}
	page := rec.Body.String()
	const open = `<script type="application/json" id="selftest-data">`
	i := strings.Index(page, open)
	j := strings.Index(page[i+len(open):], "</script>")
	if i < 0 || j < 0 {
		t.Fatalf("no data blob in page:\n%s", page)
	}
	var d selftest.PageData
	if err := json.Unmarshal([]byte(page[i+len(open):i+len(open)+j]), &d); err != nil {
		t.Fatalf("data blob: %v", err)
	}
	return page, d
}

func TestMintingOffByDefault(t *testing.T) {
	h := newHandler(t, selftest.Config{})
	if rec := post(h, "192.0.2.1:1000"); rec.Code != http.StatusNotFound {
		t.Fatalf("minting off: status %d, want 404", rec.Code)
	}
	page, d := pageData(t, h, "turn.example")
	if d.Enabled {
		t.Error("page says enabled")
	}
	if !strings.Contains(page, "not enabled") {
		t.Error("page does not say the test is not enabled")
	}
}

// TestPageDoorsAreProbes: the page's doors and words are probe's, so the
// page and `postern probe` cannot drift apart.
func TestPageDoorsAreProbes(t *testing.T) {
	h := newHandler(t, selftest.Config{TURNPort: 13478, TURNSPort: 15349, AltPort: 1443})
	page, d := pageData(t, h, "[2001:db8::1]:8443")
	want := probe.Doors(13478, 15349, 1443)
	var got []probe.Door
	for _, pd := range d.Doors {
		got = append(got, pd.Door)
		if u := pd.Door.URL("2001:db8::1"); pd.URL != u {
			t.Errorf("%s: url %q, want %q", pd.Name, pd.URL, u)
		}
		if isUDP := pd.Transport == probe.UDP; isUDP != (pd.STUNURL != "") || isUDP && pd.STUNURL != pd.Door.STUNURL("2001:db8::1") {
			t.Errorf("%s: stun url %q", pd.Name, pd.STUNURL)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("page doors\n%+v\nwant probe.Doors\n%+v", got, want)
	}
	wantWords := selftest.Words{
		CallsWork: probe.WordCallsWork, CallsWorkOnlyOver: probe.WordCallsWorkOnlyOver, CallsFail: probe.WordCallsFail,
		DoorWorks: probe.WordDoorWorks, DoorFails: probe.WordDoorFails, And: probe.WordAnd, None: probe.WordNone,
	}
	if d.Words != wantWords {
		t.Errorf("words %+v, want probe's %+v", d.Words, wantWords)
	}
	// The script writes every verdict and row from those words, never its
	// own: each is used, and no verdict text is spelled out in the page.
	for _, key := range []string{"W.calls_work", "W.calls_work_only_over", "W.calls_fail", "W.door_works", "W.door_fails", "W.and", "W.none"} {
		if !strings.Contains(page, key) {
			t.Errorf("page does not use %s", key)
		}
	}
	script := page[strings.Index(page, "</script>"):] // the page after the data blob
	for _, word := range []string{probe.WordCallsWork, probe.WordCallsFail, probe.WordDoorFails} {
		if strings.Contains(script, word) {
			t.Errorf("page spells %q outside the data blob", word)
		}
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("page refers to an external resource")
	}
}

func TestMintingRateLimit(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	h := newHandler(t, selftest.Config{Enabled: true, Secret: testSecret, Rate: 0.1, Burst: 2, Now: clock})
	for i := range 2 {
		if rec := post(h, "192.0.2.1:1000"); rec.Code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, rec.Code)
		}
	}
	if rec := post(h, "192.0.2.1:2000"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("third request from one address: status %d, want 429", rec.Code)
	}
	if rec := post(h, "[::ffff:192.0.2.1]:3000"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("same address as IPv4-mapped: status %d, want 429", rec.Code)
	}
	if rec := post(h, "192.0.2.2:1000"); rec.Code != http.StatusOK {
		t.Fatalf("another address: status %d, want 200", rec.Code)
	}
	now = now.Add(10 * time.Second) // one token back at 0.1/s
	if rec := post(h, "192.0.2.1:1000"); rec.Code != http.StatusOK {
		t.Fatalf("after 10 s: status %d, want 200", rec.Code)
	}
	req := httptest.NewRequest(http.MethodGet, selftest.CredentialsPath, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET credentials: status %d, want 405", rec.Code)
	}
}

func TestMintingTTL(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		ttl, want time.Duration
	}{{0, selftest.DefaultTTL}, {90 * time.Second, 90 * time.Second}} {
		h := newHandler(t, selftest.Config{Enabled: true, Secret: testSecret, TTL: tc.ttl, Now: func() time.Time { return now }})
		c := creds(t, post(h, "192.0.2.1:1"))
		exp, user, _ := strings.Cut(c.Username, ":")
		if exp != strconv.FormatInt(now.Add(tc.want).Unix(), 10) || user != selftest.User {
			t.Errorf("ttl %s: username %q, want expiry now+%s and user %s", tc.ttl, c.Username, tc.want, selftest.User)
		}
		if c.TTLSeconds != int64(tc.want/time.Second) {
			t.Errorf("ttl_seconds %d", c.TTLSeconds)
		}
	}
	for _, cfg := range []selftest.Config{
		{TTL: 2 * time.Hour}, {TTL: -time.Second}, {Enabled: true}, {Rate: -1},
	} {
		if _, err := selftest.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestCredentialRelays: a minted credential allocates on a real relay,
// and once its TTL has passed it no longer does.
func TestCredentialRelays(t *testing.T) {
	a, err := auth.New(auth.Config{Realm: "selftest.test", Secrets: []string{testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	port := turntest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	srv, err := relay.New(relay.Config{
		Listeners: []relay.ListenSpec{{Kind: relay.UDP, Addr: addr}}, ListenersExplicit: true,
		Auth:    a,
		Policy:  auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP: netip.MustParseAddr("127.0.0.1"),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	turntest.Start(t, srv)

	ttl := time.Minute
	now := time.Now()
	h := newHandler(t, selftest.Config{Enabled: true, Secret: testSecret, TTL: ttl, Now: func() time.Time { return now }})
	c := creds(t, post(h, "127.0.0.1:1"))
	client := turntest.Client(t, turntest.ListenUDP(t), addr, turn.ClientConfig{Username: c.Username, Password: c.Credential, Realm: "selftest.test"})
	rc, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate with a self-test credential: %v", err)
	}
	_ = rc.Close()

	now = time.Now().Add(-ttl - time.Second) // minted so long ago it has expired
	old := creds(t, post(h, "127.0.0.1:2"))
	client2 := turntest.Client(t, turntest.ListenUDP(t), addr, turn.ClientConfig{Username: old.Username, Password: old.Credential, Realm: "selftest.test"})
	if _, err := client2.Allocate(); err == nil {
		t.Fatal("an expired self-test credential allocated")
	}
}

func TestMount(t *testing.T) {
	h := newHandler(t, selftest.Config{})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	m := selftest.Mount(h, next)
	for path, want := range map[string]int{selftest.PagePath: 200, "/v1/ice-servers": http.StatusTeapot, "/": http.StatusTeapot, "/test/x": http.StatusTeapot} {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", path, rec.Code, want)
		}
	}
}

// TestSecretSource: with a SecretSource each minting uses the secret it
// gives at that moment (a rotation), and without one it answers 503.
func TestSecretSource(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret, fail := "first-secret", error(nil)
	h := newHandler(t, selftest.Config{Enabled: true, Now: func() time.Time { return now },
		SecretSource: func() (string, error) { return secret, fail }})
	for _, s := range []string{"first-secret", "rotated-secret"} {
		secret = s
		c := creds(t, post(h, "192.0.2.1:1"))
		if _, want := auth.MintREST(s, selftest.User, selftest.DefaultTTL, now); c.Credential != want {
			t.Errorf("secret %s: credential %q, want %q (minted with that secret)", s, c.Credential, want)
		}
	}
	for _, tc := range []struct {
		secret string
		err    error
	}{{"", nil}, {"x", io.ErrUnexpectedEOF}} {
		secret, fail = tc.secret, tc.err
		if rec := post(h, "192.0.2.2:1"); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("secret %q, error %v: status %d, want 503", tc.secret, tc.err, rec.Code)
		}
	}
}
