package admin

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/relay"
)

// Dashboard limits: the page is for a glance, /api/sessions has the rest.
const (
	// dashboardSessions is how many live allocations the dashboard lists
	// (the newest).
	dashboardSessions = 50
	// dashboardTopUsers is how many users each top-users table shows.
	dashboardTopUsers = 10
	// rateWindow is the shortest interval a bit rate is computed over:
	// several viewers polling at once share one measurement instead of
	// each seeing the noise of a few milliseconds.
	rateWindow = time.Second
	// certWarn and certCritical are when a certificate's expiry turns the
	// dashboard amber and red: ACME renews at a third of the lifetime left
	// (about 30 days for Let's Encrypt), so 14 days left means renewal has
	// been failing for two weeks.
	certWarn     = 14 * 24 * time.Hour
	certCritical = 3 * 24 * time.Hour
)

// Dashboard is the body of GET /api/dashboard: one snapshot of what the
// operator dashboard shows. Counters are totals since start; Rate is
// computed by the server from the totals of successive snapshots.
type Dashboard struct {
	Time    time.Time `json:"time"`
	Version string    `json:"version"`
	// State is the lifecycle ("starting", "ready", "draining",
	// "stopping"); Draining the drain flag (new allocations refused).
	State    string `json:"state"`
	Draining bool   `json:"draining"`
	// Allocations is the number of live allocations; Permissions and
	// Channels are the live permissions and channel bindings over them.
	Allocations int `json:"allocations"`
	Permissions int `json:"permissions"`
	Channels    int `json:"channels"`
	// Transports counts live allocations by client transport (udp, tcp,
	// tls), every transport a listener serves included at 0.
	Transports []TransportCount `json:"transports"`
	// Listeners are the doors: one row per listener and transport.
	Listeners []ListenerRow `json:"listeners"`
	// ToPeer and ToClient are what was relayed since start.
	ToPeer   Traffic `json:"to_peer"`
	ToClient Traffic `json:"to_client"`
	Rate     Rate    `json:"rate"`
	// RelayPortsInUse and RelayPortsCapacity: relay sockets open (over
	// every relay address) and the size of the port range.
	RelayPortsInUse    int `json:"relay_ports_in_use"`
	RelayPortsCapacity int `json:"relay_ports_capacity"`
	// TopUsersByAllocations and TopUsersByBytes rank the users of the live
	// allocations (bytes: both directions, live allocations only).
	TopUsersByAllocations []UserUsage `json:"top_users_by_allocations"`
	TopUsersByBytes       []UserUsage `json:"top_users_by_bytes"`
	// Sessions are the newest live allocations, at most 50;
	// SessionsTotal is how many there are.
	Sessions      []DashboardSession `json:"sessions"`
	SessionsTotal int                `json:"sessions_total"`
	// Drops counts discarded packets by reason, largest first, zeros left
	// out.
	Drops []ReasonCount `json:"drops"`
	// AuthFailures counts failed authentications by reason, largest
	// first, zeros left out; StaleNonces the routine 438 answers.
	AuthFailures []ReasonCount `json:"auth_failures"`
	StaleNonces  uint64        `json:"stale_nonces"`
	// RecentAuthFailures are the last failures, newest first.
	RecentAuthFailures []AuthFailure `json:"recent_auth_failures"`
	// Certificates are the TLS certificates served, soonest expiry first.
	Certificates []Certificate `json:"certificates"`
}

// TransportCount is the live allocations of one client transport.
type TransportCount struct {
	Transport string `json:"transport"`
	Active    int    `json:"active"`
}

// ListenerRow is one listener and client transport.
type ListenerRow struct {
	// Listener is e.g. "tcp+tls://0.0.0.0:443"; Port its port.
	Listener  string `json:"listener"`
	Port      int    `json:"port"`
	Transport string `json:"transport"`
	Active    int    `json:"active"`
	Created   uint64 `json:"created"`
}

// Rate is the relayed bit rate over the last interval between snapshots.
type Rate struct {
	// Known is false until two snapshots at least a second apart exist.
	Known bool `json:"known"`
	// WindowSeconds is the interval the rate was measured over.
	WindowSeconds float64 `json:"window_seconds"`
	// ToPeerBitsPerSecond and ToClientBitsPerSecond count payload bits.
	ToPeerBitsPerSecond   float64 `json:"to_peer_bits_per_second"`
	ToClientBitsPerSecond float64 `json:"to_client_bits_per_second"`
}

// UserUsage is one user's live allocations and what they relayed.
type UserUsage struct {
	User        string `json:"user"`
	Allocations int    `json:"allocations"`
	Bytes       uint64 `json:"bytes"`
}

// DashboardSession is one live allocation on the dashboard.
type DashboardSession struct {
	ID         uint64 `json:"id"`
	User       string `json:"user"`
	Transport  string `json:"transport"`
	Listener   string `json:"listener"`
	Client     string `json:"client"`
	Relayed    string `json:"relayed"`
	AgeSeconds int64  `json:"age_seconds"`
	// Bytes is what it relayed, both directions.
	Bytes uint64 `json:"bytes"`
}

// ReasonCount is a counter by reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

// AuthFailure is one recent failed authentication. Username is what the
// client sent (cut to 64 bytes), not a verified identity.
type AuthFailure struct {
	Time      time.Time `json:"time"`
	Client    string    `json:"client"`
	Transport string    `json:"transport"`
	Reason    string    `json:"reason"`
	Username  string    `json:"username"`
}

// Certificate is a TLS certificate served, and how soon it expires.
type Certificate struct {
	// Source is "acme", "configured" or "self-signed".
	Source string   `json:"source"`
	Names  []string `json:"names"`
	Issuer string   `json:"issuer"`
	// NotAfter is null for an ACME domain still waiting for its first
	// certificate.
	NotAfter *time.Time `json:"not_after"`
	// DaysLeft is the whole days until NotAfter (negative once expired).
	DaysLeft int `json:"days_left"`
	// Status is "ok", "warn" (under 14 days left), "critical" (under 3
	// days, or expired) or "pending" (no certificate yet).
	Status string `json:"status"`
}

// rateMeter turns the relayed-bytes totals of successive snapshots into a
// bit rate. It is per Server (no global state) and shared by every viewer.
type rateMeter struct {
	mu               sync.Mutex
	at               time.Time // of the last sample; zero before the first
	toPeer, toClient uint64
	rate             Rate
}

// observe records the totals at now and returns the rate over the last
// interval of at least rateWindow.
func (m *rateMeter) observe(now time.Time, toPeer, toClient uint64) Rate {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.at.IsZero() {
		m.at, m.toPeer, m.toClient = now, toPeer, toClient
		return m.rate
	}
	dt := now.Sub(m.at)
	if dt < rateWindow {
		return m.rate
	}
	bits := func(now, before uint64) float64 {
		if now < before { // never expected: the totals are monotonic
			return 0
		}
		return float64(now-before) * 8 / dt.Seconds()
	}
	m.rate = Rate{Known: true, WindowSeconds: dt.Seconds(),
		ToPeerBitsPerSecond: bits(toPeer, m.toPeer), ToClientBitsPerSecond: bits(toClient, m.toClient)}
	m.at, m.toPeer, m.toClient = now, toPeer, toClient
	return m.rate
}

// dashboard takes one snapshot of the relay for the dashboard at now.
func (s *Server) dashboard(now time.Time) Dashboard {
	r := s.cfg.Relay
	st := r.Stats()
	d := Dashboard{
		Time:               now.UTC(),
		Version:            s.cfg.Version,
		State:              r.State(),
		Draining:           r.Draining(),
		Allocations:        st.AllocationsActive,
		Permissions:        st.Permissions,
		Channels:           st.Channels,
		ToPeer:             Traffic(st.ToPeer),
		ToClient:           Traffic(st.ToClient),
		Rate:               s.meter.observe(now, st.ToPeer.Bytes, st.ToClient.Bytes),
		RelayPortsCapacity: st.RelayPorts.Len(),
		StaleNonces:        st.StaleNonces,
		Transports:         []TransportCount{},
		Listeners:          []ListenerRow{},
		Sessions:           []DashboardSession{},
		RecentAuthFailures: []AuthFailure{},
		Certificates:       []Certificate{},
	}
	for _, n := range st.RelayPortsInUse {
		d.RelayPortsInUse += n
	}
	byTransport := map[string]int{}
	for _, l := range st.Listeners {
		d.Listeners = append(d.Listeners, ListenerRow{Listener: l.Listener, Port: portOf(l.Listener),
			Transport: l.Transport, Active: l.Active, Created: l.Created})
		byTransport[l.Transport] += l.Active
	}
	for _, tr := range []string{"udp", "tcp", "tls"} {
		if n, ok := byTransport[tr]; ok {
			d.Transports = append(d.Transports, TransportCount{Transport: tr, Active: n})
		}
	}
	d.Drops = reasonCounts(st.Drops)
	d.AuthFailures = reasonCounts(st.AuthFailuresByReason)

	sessions := r.Sessions("")
	d.SessionsTotal = len(sessions)
	users := map[string]*UserUsage{}
	for _, ss := range sessions {
		u := cmp.Or(ss.User, ss.Username)
		uu := users[u]
		if uu == nil {
			uu = &UserUsage{User: u}
			users[u] = uu
		}
		uu.Allocations++
		uu.Bytes += ss.ToPeer.Bytes + ss.ToClient.Bytes
	}
	// Sessions come oldest first: the newest are at the end.
	for i := len(sessions) - 1; i >= 0 && len(d.Sessions) < dashboardSessions; i-- {
		ss := sessions[i]
		d.Sessions = append(d.Sessions, DashboardSession{
			ID: ss.ID, User: cmp.Or(ss.User, ss.Username), Transport: ss.FiveTuple.Transport.String(),
			Listener: ss.Listener, Client: ss.FiveTuple.Client.String(), Relayed: ss.Relayed.String(),
			AgeSeconds: max(int64(now.Sub(ss.Created)/time.Second), 0),
			Bytes:      ss.ToPeer.Bytes + ss.ToClient.Bytes,
		})
	}
	all := make([]UserUsage, 0, len(users))
	for _, uu := range users {
		all = append(all, *uu)
	}
	d.TopUsersByAllocations = topUsers(all, func(a, b UserUsage) int {
		return cmp.Or(cmp.Compare(b.Allocations, a.Allocations), cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(a.User, b.User))
	})
	d.TopUsersByBytes = topUsers(all, func(a, b UserUsage) int {
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(b.Allocations, a.Allocations), cmp.Compare(a.User, b.User))
	})

	for _, f := range r.RecentAuthFailures() {
		d.RecentAuthFailures = append(d.RecentAuthFailures, AuthFailure{Time: f.Time.UTC(), Client: f.Client.String(),
			Transport: f.Transport, Reason: f.Reason, Username: f.Username})
	}
	for _, c := range r.Certificates() {
		d.Certificates = append(d.Certificates, newCertificate(c, now))
	}
	return d
}

func newCertificate(c relay.CertificateInfo, now time.Time) Certificate {
	out := Certificate{Source: c.Source, Names: c.Names, Issuer: c.Issuer, Status: "pending"}
	if out.Names == nil {
		out.Names = []string{}
	}
	if c.NotAfter.IsZero() {
		return out
	}
	na := c.NotAfter.UTC()
	out.NotAfter = &na
	left := na.Sub(now)
	out.DaysLeft = int(left / (24 * time.Hour))
	switch {
	case left < certCritical:
		out.Status = "critical"
	case left < certWarn:
		out.Status = "warn"
	default:
		out.Status = "ok"
	}
	return out
}

// topUsers returns the first dashboardTopUsers of users in the order of
// compare, leaving users itself alone.
func topUsers(users []UserUsage, compare func(a, b UserUsage) int) []UserUsage {
	out := slices.Clone(users)
	slices.SortFunc(out, compare)
	if out == nil {
		out = []UserUsage{}
	}
	return out[:min(len(out), dashboardTopUsers)]
}

// reasonCounts lists the non-zero counters of m, largest first.
func reasonCounts(m map[string]uint64) []ReasonCount {
	out := []ReasonCount{}
	for reason, n := range m {
		if n > 0 {
			out = append(out, ReasonCount{Reason: reason, Count: n})
		}
	}
	slices.SortFunc(out, func(a, b ReasonCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Reason, b.Reason))
	})
	return out
}

// portOf returns the port of a listener name such as "udp://[::]:3478",
// or 0.
func portOf(listener string) int {
	i := strings.LastIndexByte(listener, ':')
	if i < 0 {
		return 0
	}
	p, err := strconv.Atoi(listener[i+1:])
	if err != nil {
		return 0
	}
	return p
}

// apiDashboard answers GET /api/dashboard.
func (s *Server) apiDashboard(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.dashboard(time.Now()))
}
