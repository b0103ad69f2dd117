package admin_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay"
)

// dashboardFake is newFake with what only the dashboard shows.
func dashboardFake() *fakeRelay {
	f := newFake()
	now := time.Now()
	// A third, newer session of alice's over TCP 443, which relayed most.
	f.sessions = append(f.sessions, relay.Session{ID: 9, Username: "alice", User: "alice",
		FiveTuple: allocations.FiveTuple{Client: netip.MustParseAddrPort("198.51.100.9:50002"), Transport: allocations.TCP},
		Listener:  "tcp+tls://0.0.0.0:443", Relayed: netip.MustParseAddrPort("203.0.113.1:49162"),
		Created: now.Add(-10 * time.Second), Expires: now.Add(10 * time.Minute),
		ToPeer: relay.Traffic{Packets: 1, Bytes: 5000}, ToClient: relay.Traffic{Packets: 1, Bytes: 5000}})
	f.stats.AllocationsActive = 3
	f.stats.Listeners = append(f.stats.Listeners,
		relay.ListenerStats{Listener: "tcp+tls://0.0.0.0:443", Transport: "tcp", Active: 1, Created: 1},
		relay.ListenerStats{Listener: "tcp+tls://0.0.0.0:443", Transport: "tls", Active: 0, Created: 0},
		relay.ListenerStats{Listener: "tls://0.0.0.0:5349", Transport: "tls", Active: 1, Created: 1})
	f.stats.Drops = map[string]uint64{"no_permission": 2, "policy": 0, "rate_limited": 5}
	f.stats.AuthFailuresByReason = map[string]uint64{"bad_integrity": 3, "expired": 0}
	f.stats.RelayPorts = allocations.PortRange{Low: 49152, High: 65535}
	f.stats.RelayPortsInUse = map[netip.Addr]int{netip.MustParseAddr("203.0.113.1"): 3}
	f.recentAuth = []relay.AuthFailureRecord{{Time: now.Add(-time.Second), Client: netip.MustParseAddrPort("192.0.2.66:4000"),
		Transport: "udp", Reason: "bad_integrity", Username: "<script>alert(1)</script>"}}
	f.certs = []relay.CertificateInfo{
		{Source: "acme", Names: []string{"turn.example"}, Issuer: "R11", NotAfter: now.Add(10 * 24 * time.Hour)},
		{Source: "acme", Names: []string{"pending.example"}},
	}
	return f
}

// request answers one request with a dashboard in front of f.
func request(t *testing.T, f *fakeRelay, token string, req *http.Request) *http.Response {
	t.Helper()
	adm, err := admin.New(admin.Config{Token: token, Relay: f, Version: "9.9.9-fake", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	adm.Handler().ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func browserGet(target string, cookies ...*http.Cookie) *http.Request {
	req := httptest.NewRequest("GET", target, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return req
}

func TestDashboardAPI(t *testing.T) {
	f := dashboardFake()
	f.draining = true
	req := httptest.NewRequest("GET", "/api/dashboard", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp := request(t, f, testToken, req)
	b := body(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/dashboard = %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var d admin.Dashboard
	if err := json.Unmarshal([]byte(b), &d); err != nil {
		t.Fatal(err)
	}
	if d.State != "draining" || !d.Draining || d.Allocations != 3 || d.Version != "9.9.9-fake" ||
		d.RelayPortsInUse != 3 || d.RelayPortsCapacity != 16384 {
		t.Errorf("summary: state %q draining %v allocations %d version %q ports %d of %d",
			d.State, d.Draining, d.Allocations, d.Version, d.RelayPortsInUse, d.RelayPortsCapacity)
	}
	wantTransports := []admin.TransportCount{{Transport: "udp", Active: 1}, {Transport: "tcp", Active: 1}, {Transport: "tls", Active: 1}}
	if !equalJSON(d.Transports, wantTransports) {
		t.Errorf("transports %+v, want %+v", d.Transports, wantTransports)
	}
	if len(d.Listeners) != 4 || d.Listeners[1] != (admin.ListenerRow{Listener: "tcp+tls://0.0.0.0:443", Port: 443, Transport: "tcp", Active: 1, Created: 1}) {
		t.Errorf("listeners %+v", d.Listeners)
	}
	if d.SessionsTotal != 3 || len(d.Sessions) != 3 || d.Sessions[0].ID != 9 || d.Sessions[2].ID != 7 ||
		d.Sessions[0].Bytes != 10000 || d.Sessions[0].Transport != "tcp" || d.Sessions[0].AgeSeconds < 9 {
		t.Errorf("sessions (newest first) %+v", d.Sessions)
	}
	if len(d.TopUsersByAllocations) != 2 || d.TopUsersByAllocations[0] != (admin.UserUsage{User: "alice", Allocations: 2, Bytes: 10700}) {
		t.Errorf("top users by allocations %+v", d.TopUsersByAllocations)
	}
	if len(d.TopUsersByBytes) != 2 || d.TopUsersByBytes[0].User != "alice" || d.TopUsersByBytes[1] != (admin.UserUsage{User: "bob", Allocations: 1}) {
		t.Errorf("top users by bytes %+v", d.TopUsersByBytes)
	}
	if want := []admin.ReasonCount{{Reason: "rate_limited", Count: 5}, {Reason: "no_permission", Count: 2}}; !equalJSON(d.Drops, want) {
		t.Errorf("drops %+v, want %+v (largest first, no zeros)", d.Drops, want)
	}
	if want := []admin.ReasonCount{{Reason: "bad_integrity", Count: 3}}; !equalJSON(d.AuthFailures, want) {
		t.Errorf("auth failures %+v, want %+v", d.AuthFailures, want)
	}
	if len(d.RecentAuthFailures) != 1 || d.RecentAuthFailures[0].Client != "192.0.2.66:4000" || d.RecentAuthFailures[0].Reason != "bad_integrity" {
		t.Errorf("recent auth failures %+v", d.RecentAuthFailures)
	}
	if len(d.Certificates) != 2 || d.Certificates[0].Status != "warn" || d.Certificates[0].DaysLeft != 9 ||
		d.Certificates[0].NotAfter == nil || d.Certificates[1].Status != "pending" || d.Certificates[1].NotAfter != nil {
		t.Errorf("certificates %+v", d.Certificates)
	}
	if d.Rate.Known {
		t.Errorf("rate known after one snapshot: %+v", d.Rate)
	}
	// An idle server: lists are [], not null, so the page's script can map them.
	idle := &fakeRelay{state: "ready"}
	req = httptest.NewRequest("GET", "/api/dashboard", nil)
	b = body(t, request(t, idle, "", req))
	for _, field := range []string{"transports", "listeners", "sessions", "drops", "auth_failures", "recent_auth_failures",
		"certificates", "top_users_by_allocations", "top_users_by_bytes"} {
		if !strings.Contains(b, `"`+field+`": []`) {
			t.Errorf("idle dashboard: %s is not []: %s", field, b)
		}
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestDashboardAuth: with a token, neither the page nor its JSON is
// readable without it; /?token= or the form exchanges it for an HttpOnly
// SameSite=Strict cookie that is not the token, and that opens only the
// dashboard.
func TestDashboardAuth(t *testing.T) {
	f := dashboardFake()
	secret := "alice" // a string that only the dashboard itself would show

	// No token shown: 401 everywhere, with a sign-in form and no data.
	resp := request(t, f, testToken, httptest.NewRequest("GET", "/api/dashboard", nil))
	if b := body(t, resp); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" || strings.Contains(b, secret) {
		t.Errorf("GET /api/dashboard without token = %d %q", resp.StatusCode, b)
	}
	resp = request(t, f, testToken, browserGet("/"))
	b := body(t, resp)
	if resp.StatusCode != 401 || !strings.Contains(b, `<form method="post" action="/">`) || strings.Contains(b, secret) ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("browser GET / without token = %d %s", resp.StatusCode, b)
	}
	for _, wrong := range []string{"", "wrong", testToken + "x", testToken[:len(testToken)-1]} {
		resp = request(t, f, testToken, browserGet("/?token="+url.QueryEscape(wrong)))
		if b := body(t, resp); resp.StatusCode != 401 || strings.Contains(b, secret) || len(resp.Cookies()) != 0 {
			t.Errorf("GET /?token=%q = %d, cookies %v", wrong, resp.StatusCode, resp.Cookies())
		}
	}

	// The right token in the URL: a cookie, and a redirect that drops it.
	resp = request(t, f, testToken, browserGet("/?token="+url.QueryEscape(testToken)))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("GET /?token=TOKEN = %d Location %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v, want one", cookies)
	}
	ck := cookies[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Value == "" ||
		strings.Contains(ck.Value, testToken) || strings.Contains(resp.Header.Get("Set-Cookie"), testToken) {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not the token", ck)
	}

	// The cookie opens the page and its JSON.
	resp = request(t, f, testToken, browserGet("/", ck))
	b = body(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(b, `<tr data-id="7">`) || !strings.Contains(b, `<caption id="cap-t-sessions">`) {
		t.Fatalf("GET / with the cookie = %d\n%s", resp.StatusCode, b)
	}
	// Client-chosen text is escaped, and only our own script runs.
	if strings.Contains(b, "<script>alert(1)</script>") || !strings.Contains(b, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the username is not escaped in the page")
	}
	csp := resp.Header.Get("Content-Security-Policy")
	start := strings.Index(b, "<script>") + len("<script>")
	script := b[start : start+strings.Index(b[start:], "</script>")]
	sum := sha256.Sum256([]byte(script))
	if !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q does not allow the page's script by its hash", csp)
	}
	api := httptest.NewRequest("GET", "/api/dashboard", nil)
	api.AddCookie(ck)
	if resp := request(t, f, testToken, api); resp.StatusCode != 200 {
		t.Errorf("GET /api/dashboard with the cookie = %d", resp.StatusCode)
	}
	// ... but nothing else: the cookie is not the token.
	for _, path := range []string{"/metrics", "/api/sessions", "/api/drain"} {
		req := httptest.NewRequest("GET", path, nil)
		req.AddCookie(ck)
		if resp := request(t, f, testToken, req); resp.StatusCode != 401 {
			t.Errorf("GET %s with the dashboard cookie = %d, want 401", path, resp.StatusCode)
		}
	}
	// A forged cookie, or the cookie of another token, does not open it.
	for _, forged := range []string{"", testToken, strings.Repeat("0", len(ck.Value))} {
		resp := request(t, f, testToken, browserGet("/", &http.Cookie{Name: ck.Name, Value: forged}))
		if resp.StatusCode != 401 {
			t.Errorf("GET / with cookie %q = %d, want 401", forged, resp.StatusCode)
		}
	}
	if resp := request(t, f, "another-token", browserGet("/", ck)); resp.StatusCode != 401 {
		t.Errorf("the cookie still works after the token changed: %d", resp.StatusCode)
	}
	// The bearer header opens the page too (a script, a proxy).
	req := browserGet("/")
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp := request(t, f, testToken, req); resp.StatusCode != 200 {
		t.Errorf("GET / with the bearer header = %d", resp.StatusCode)
	}

	// The sign-in form posts the token.
	post := func(form url.Values) *http.Response {
		req := httptest.NewRequest("POST", "/", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return request(t, f, testToken, req)
	}
	if resp := post(url.Values{"token": {"wrong"}}); resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Errorf("POST / with a wrong token = %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if resp := post(url.Values{"token": {strings.Repeat("x", 10000)}}); resp.StatusCode != 400 {
		t.Errorf("POST / with a 10 kB body = %d, want 400", resp.StatusCode)
	}
	resp = post(url.Values{"token": {testToken}})
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].Value != ck.Value {
		t.Errorf("POST / with the token = %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
}

// TestDashboardPlainTextIndex: curl and scripts still get the plain-text
// index at / (no token needed, as before) and at /help.
func TestDashboardPlainTextIndex(t *testing.T) {
	f := dashboardFake()
	for _, accept := range []string{"", "*/*", "text/plain", "application/json"} {
		req := httptest.NewRequest("GET", "/", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp := request(t, f, testToken, req)
		b := body(t, resp)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
			!strings.Contains(b, "GET    /api/dashboard") || !strings.Contains(b, "GET    /metrics") {
			t.Errorf("GET / Accept %q = %d %s\n%s", accept, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	}
	resp := request(t, f, testToken, browserGet("/help"))
	if b := body(t, resp); resp.StatusCode != 200 || !strings.HasPrefix(b, "postern admin\n") {
		t.Errorf("GET /help = %d %q", resp.StatusCode, b)
	}
	// Without a configured token the page is open, like the rest.
	resp = request(t, f, "", browserGet("/"))
	if b := body(t, resp); resp.StatusCode != 200 || !strings.Contains(b, `data-id="9"`) {
		t.Errorf("GET / without a configured token = %d", resp.StatusCode)
	}
}
