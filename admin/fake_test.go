package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/allocations"
	"github.com/postern/postern/relay"
)

// fakeRelay is an admin.Relay with no sockets: the handlers' tests set its
// fields and read back what the handlers did to it.
type fakeRelay struct {
	mu       sync.Mutex
	stats    relay.Stats
	state    string
	sessions []relay.Session
	draining bool
	kicked   []uint64
	// recentAuth and certs are what RecentAuthFailures and Certificates
	// return.
	recentAuth []relay.AuthFailureRecord
	certs      []relay.CertificateInfo
}

func (f *fakeRelay) RecentAuthFailures() []relay.AuthFailureRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recentAuth
}

func (f *fakeRelay) Certificates() []relay.CertificateInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.certs
}

func (f *fakeRelay) Stats() relay.Stats { return f.stats }
func (f *fakeRelay) Ready() bool        { return f.State() == "ready" }
func (f *fakeRelay) State() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.draining && f.state == "ready" {
		return "draining"
	}
	return f.state
}

func (f *fakeRelay) Sessions(user string) []relay.Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []relay.Session
	for _, s := range f.sessions {
		if user == "" || s.User == user || s.Username == user {
			out = append(out, s)
		}
	}
	return out
}

func (f *fakeRelay) Kick(id uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.sessions {
		if s.ID == id {
			f.sessions = append(f.sessions[:i], f.sessions[i+1:]...)
			f.kicked = append(f.kicked, id)
			return true
		}
	}
	return false
}

func (f *fakeRelay) KickUser(user string) int {
	n := 0
	for _, s := range f.Sessions(user) {
		if f.Kick(s.ID) {
			n++
		}
	}
	return n
}

func (f *fakeRelay) Draining() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.draining
}

func (f *fakeRelay) SetDraining(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.draining = on
}

func (f *fakeRelay) Allocations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

var _ admin.Relay = (*fakeRelay)(nil)

func newFake() *fakeRelay {
	created := time.Now().Add(-90 * time.Second)
	return &fakeRelay{
		state: "ready",
		sessions: []relay.Session{
			{
				ID: 7, Username: "1767312000:alice", User: "alice",
				FiveTuple: allocations.FiveTuple{Client: netip.MustParseAddrPort("198.51.100.7:50000"), Transport: allocations.UDP},
				Listener:  "udp://0.0.0.0:3478",
				Relayed:   netip.MustParseAddrPort("203.0.113.1:49160"),
				Created:   created, Expires: created.Add(10 * time.Minute),
				Permissions: []allocations.Permission{{Peer: netip.MustParseAddr("192.0.2.9"), Expires: created.Add(5 * time.Minute)}},
				Channels: []allocations.Channel{{Number: 0x4001, Peer: netip.MustParseAddrPort("192.0.2.9:6000"),
					Expires: created.Add(10 * time.Minute)}},
				ToPeer: relay.Traffic{Packets: 3, Bytes: 300}, ToClient: relay.Traffic{Packets: 4, Bytes: 400},
			},
			{ID: 8, Username: "bob", User: "bob", Listener: "tls://0.0.0.0:5349", Created: created, Expires: created.Add(time.Minute),
				FiveTuple: allocations.FiveTuple{Client: netip.MustParseAddrPort("198.51.100.8:50001"), Transport: allocations.TLS}},
		},
		stats: relay.Stats{
			Listeners: []relay.ListenerStats{{Listener: "udp://0.0.0.0:3478", Transport: "udp", Active: 1, Created: 5,
				Ended: map[string]uint64{"expired": 4}}},
			ToPeer: relay.Traffic{Packets: 11, Bytes: 1100},
			Drops:  map[string]uint64{"no_permission": 2},
			Usage:  relay.UsageCounts{Written: 12, Dropped: 3, WriteErrors: 2},
		},
	}
}

// serveFake answers one request with the admin handler in front of f.
func serveFake(t *testing.T, f *fakeRelay, method, path, token string) (int, string) {
	t.Helper()
	adm, err := admin.New(admin.Config{Token: testToken, Relay: f, Version: "9.9.9-fake", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(method, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	adm.Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestFakeReadiness(t *testing.T) {
	for _, tt := range []struct {
		state    string
		draining bool
		code     int
		body     string
	}{
		{"starting", false, 503, "starting"},
		{"ready", false, 200, "ready"},
		{"ready", true, 503, "draining"},
		{"stopping", false, 503, "stopping"},
	} {
		f := newFake()
		f.state, f.draining = tt.state, tt.draining
		code, body := serveFake(t, f, "GET", "/readyz", "")
		if code != tt.code || strings.TrimSpace(body) != tt.body {
			t.Errorf("state %s draining %v: /readyz = %d %q, want %d %q", tt.state, tt.draining, code, body, tt.code, tt.body)
		}
	}
}

func TestFakeDrain(t *testing.T) {
	f := newFake()
	for _, step := range []struct {
		method string
		want   bool
	}{{"GET", false}, {"POST", true}, {"GET", true}, {"DELETE", false}} {
		code, body := serveFake(t, f, step.method, "/api/drain", testToken)
		var st admin.DrainState
		if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 {
			t.Fatalf("%s /api/drain = %d %s (%v)", step.method, code, body, err)
		}
		if st.Draining != step.want || f.Draining() != step.want || st.Allocations != 2 {
			t.Errorf("%s /api/drain: state %+v, relay draining %v; want draining %v with 2 allocations",
				step.method, st, f.Draining(), step.want)
		}
	}
	if code, _ := serveFake(t, f, "POST", "/api/drain", ""); code != http.StatusUnauthorized || f.Draining() {
		t.Errorf("POST /api/drain without the token: %d, draining %v; want 401 and no change", code, f.Draining())
	}
}

func TestFakeSessionsAndKick(t *testing.T) {
	f := newFake()
	code, body := serveFake(t, f, "GET", "/api/sessions?user=alice", testToken)
	var list admin.SessionList
	if err := json.Unmarshal([]byte(body), &list); err != nil || code != 200 || len(list.Sessions) != 1 {
		t.Fatalf("GET /api/sessions?user=alice = %d %s (%v)", code, body, err)
	}
	s := list.Sessions[0]
	if s.ID != 7 || s.User != "alice" || s.Username != "1767312000:alice" || s.Client != "198.51.100.7:50000" ||
		s.Transport != "udp" || s.Relayed != "203.0.113.1:49160" || s.AgeSeconds < 89 || s.AgeSeconds > 120 ||
		s.LifetimeLeftSeconds < 480 || s.LifetimeLeftSeconds > 511 {
		t.Errorf("session %+v", s)
	}
	if len(s.Permissions) != 1 || s.Permissions[0].Peer != "192.0.2.9" || len(s.Channels) != 1 ||
		s.Channels[0].Number != 0x4001 || s.Channels[0].Peer != "192.0.2.9:6000" ||
		s.ToPeer != (admin.Traffic{Packets: 3, Bytes: 300}) || s.ToClient != (admin.Traffic{Packets: 4, Bytes: 400}) {
		t.Errorf("session details %+v", s)
	}
	// bob's session has no permissions: the lists are [], not null.
	_, body = serveFake(t, f, "GET", "/api/sessions?user=bob", testToken)
	if !strings.Contains(body, `"permissions": []`) || !strings.Contains(body, `"channels": []`) {
		t.Errorf("empty lists are not []: %s", body)
	}
	if code, _ := serveFake(t, f, "DELETE", "/api/sessions/7", testToken); code != 200 || len(f.kicked) != 1 || f.kicked[0] != 7 {
		t.Errorf("DELETE /api/sessions/7 = %d, kicked %v", code, f.kicked)
	}
	if code, _ := serveFake(t, f, "DELETE", "/api/sessions/7", testToken); code != 404 {
		t.Errorf("second DELETE /api/sessions/7 = %d, want 404", code)
	}
	if code, body := serveFake(t, f, "DELETE", "/api/sessions?user=bob", testToken); code != 200 || !strings.Contains(body, `"kicked": 1`) {
		t.Errorf("DELETE /api/sessions?user=bob = %d %s", code, body)
	}
}

func TestFakeMetrics(t *testing.T) {
	code, body := serveFake(t, newFake(), "GET", "/metrics", testToken)
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`postern_build_info{goversion="`,
		`postern_ready 1`,
		`postern_allocations_active{listener="udp://0.0.0.0:3478",transport="udp"} 1`,
		`postern_allocations_ended_total{listener="udp://0.0.0.0:3478",reason="expired",transport="udp"} 4`,
		`postern_relayed_packets_total{direction="to_peer"} 11`,
		`postern_dropped_packets_total{reason="no_permission"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
