package admin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The dashboard page: server-rendered HTML, a stylesheet and a script of
// its own, nothing loaded from elsewhere. The script only refreshes what
// the server rendered, from GET /api/dashboard every 2 s; without it the
// page is a snapshot. Formatting is done the same way on both sides
// (formatBits and fmtBits, ...): TestDashboardFormatsAgree checks that.

// pollInterval is how often the page asks for a new snapshot.
const pollInterval = 2 * time.Second

// cell is one table cell: its text, and optionally a CSS class (status
// colours; the text always says the same in words).
type cell struct {
	Text  string
	Class string
}

// row is one table row; ID, when set, becomes its data-id attribute.
type row struct {
	ID    string
	Cells []cell
}

// table is one table of the page, as the template renders it.
type table struct {
	ID, Caption, Empty string
	Headers            []string
	Rows               []row
}

func c(text string) cell { return cell{Text: text} }

// dashboardTables lays d out as the page's tables, in page order. The
// script builds the same rows from the JSON (dashboardJS, function tables).
func dashboardTables(d Dashboard) []table {
	doors := table{ID: "t-doors", Caption: "Doors: live allocations by listener and transport",
		Empty: "No listener is bound.", Headers: []string{"Door", "Listener", "Live allocations", "Allocations since start"}}
	for _, l := range d.Listeners {
		doors.Rows = append(doors.Rows, row{Cells: []cell{c(door(l.Transport, l.Port)), c(l.Listener), c(itoa(l.Active)), c(utoa(l.Created))}})
	}
	sessions := table{ID: "t-sessions", Caption: sessionsCaption(len(d.Sessions), d.SessionsTotal),
		Empty: "No live allocations.", Headers: []string{"ID", "User", "Door", "Client", "Relayed address", "Age", "Relayed"}}
	for _, s := range d.Sessions {
		sessions.Rows = append(sessions.Rows, row{ID: strconv.FormatUint(s.ID, 10), Cells: []cell{
			c(strconv.FormatUint(s.ID, 10)), c(s.User), c(door(s.Transport, portOf(s.Listener))), c(s.Client), c(s.Relayed),
			c(formatAge(s.AgeSeconds)), c(formatBytes(s.Bytes))}})
	}
	byAlloc := table{ID: "t-top-allocations", Caption: "Top users by live allocations", Empty: "No live allocations.",
		Headers: []string{"User", "Live allocations", "Relayed"}}
	for _, u := range d.TopUsersByAllocations {
		byAlloc.Rows = append(byAlloc.Rows, row{Cells: []cell{c(u.User), c(itoa(u.Allocations)), c(formatBytes(u.Bytes))}})
	}
	byBytes := table{ID: "t-top-bytes", Caption: "Top users by bytes relayed (live allocations)", Empty: "No live allocations.",
		Headers: []string{"User", "Relayed", "Live allocations"}}
	for _, u := range d.TopUsersByBytes {
		byBytes.Rows = append(byBytes.Rows, row{Cells: []cell{c(u.User), c(formatBytes(u.Bytes)), c(itoa(u.Allocations))}})
	}
	drops := table{ID: "t-drops", Caption: "Dropped packets by reason, since start", Empty: "No packet dropped.",
		Headers: []string{"Reason", "Packets"}}
	for _, r := range d.Drops {
		drops.Rows = append(drops.Rows, row{Cells: []cell{c(r.Reason), c(utoa(r.Count))}})
	}
	authn := table{ID: "t-auth", Caption: "Authentication failures by reason, since start", Empty: "No authentication failure.",
		Headers: []string{"Reason", "Requests"}}
	for _, r := range d.AuthFailures {
		authn.Rows = append(authn.Rows, row{Cells: []cell{c(r.Reason), c(utoa(r.Count))}})
	}
	recent := table{ID: "t-recent-auth", Caption: "Recent authentication failures, newest first", Empty: "No authentication failure.",
		Headers: []string{"Time (UTC)", "Client", "Transport", "Reason", "Username sent"}}
	for _, f := range d.RecentAuthFailures {
		recent.Rows = append(recent.Rows, row{Cells: []cell{c(formatTime(f.Time)), c(f.Client), c(f.Transport), c(f.Reason), c(f.Username)}})
	}
	certs := table{ID: "t-certs", Caption: "TLS certificates, soonest expiry first", Empty: "No TLS listener: no certificate.",
		Headers: []string{"Status", "Expires (UTC)", "Names", "Issuer", "Source"}}
	for _, ct := range d.Certificates {
		certs.Rows = append(certs.Rows, row{Cells: []cell{{Text: certStatus(ct), Class: "st-" + ct.Status}, c(certExpiry(ct)),
			c(strings.Join(ct.Names, ", ")), c(ct.Issuer), c(ct.Source)}})
	}
	return []table{doors, sessions, byAlloc, byBytes, drops, authn, recent, certs}
}

func itoa(n int) string     { return strconv.Itoa(n) }
func utoa(n uint64) string  { return strconv.FormatUint(n, 10) }
func upper(s string) string { return strings.ToUpper(s) }

// door names a way in as users meet it: "UDP 3478", "TLS 443".
func door(transport string, port int) string {
	if port == 0 {
		return upper(transport)
	}
	return upper(transport) + " " + strconv.Itoa(port)
}

func sessionsCaption(shown, total int) string {
	if shown < total {
		return fmt.Sprintf("Live allocations: the newest %d of %d (all of them: GET /api/sessions)", shown, total)
	}
	return "Live allocations, newest first"
}

// certStatus says a certificate's state in words.
func certStatus(ct Certificate) string {
	switch ct.Status {
	case "pending":
		return "Pending: ACME has not issued it yet"
	case "critical":
		if ct.DaysLeft < 0 || (ct.NotAfter != nil && ct.NotAfter.Before(time.Now())) {
			return "Expired"
		}
		return "Critical: renew now"
	case "warn":
		return "Renew soon"
	}
	return "OK"
}

// certExpiry is "2027-01-02 (in 30 days)".
func certExpiry(ct Certificate) string {
	if ct.NotAfter == nil {
		return "not yet issued"
	}
	date := ct.NotAfter.UTC().Format("2006-01-02")
	switch {
	case ct.DaysLeft < 0:
		return fmt.Sprintf("%s (%d days ago)", date, -ct.DaysLeft)
	case ct.DaysLeft == 1:
		return date + " (in 1 day)"
	}
	return fmt.Sprintf("%s (in %d days)", date, ct.DaysLeft)
}

// formatBits is a bit rate with SI prefixes and 3 significant digits.
func formatBits(b float64) string { return si(b, "bit/s") }

// formatBytes is a byte count with SI prefixes and 3 significant digits.
func formatBytes(n uint64) string { return si(float64(n), "B") }

// si writes v with an SI prefix in 3 significant digits. The thresholds
// are where rounding would carry (9.995 prints as 10.0, 999.5 as 1.00 k).
func si(v float64, unit string) string {
	prefixes := []string{"", "k", "M", "G", "T", "P"}
	i := 0
	for v >= 999.5 && i < len(prefixes)-1 {
		v /= 1000
		i++
	}
	switch {
	case i == 0 || v >= 99.95:
		return fmt.Sprintf("%.0f %s%s", v, prefixes[i], unit)
	case v >= 9.995:
		return fmt.Sprintf("%.1f %s%s", v, prefixes[i], unit)
	}
	return fmt.Sprintf("%.2f %s%s", v, prefixes[i], unit)
}

// formatAge is a duration in seconds for people: "42 s", "5 min",
// "3 h 20 min", "2 d 4 h".
func formatAge(s int64) string {
	switch {
	case s < 60:
		return fmt.Sprintf("%d s", s)
	case s < 3600:
		return fmt.Sprintf("%d min", s/60)
	case s < 86400:
		return fmt.Sprintf("%d h %d min", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%d d %d h", s/86400, s%86400/3600)
}

// formatTime is "2006-01-02 15:04:05" in UTC.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

// figures are the key numbers at the top of the page, by element ID.
func figures(d Dashboard) []figure {
	state := d.State
	if d.Draining && d.State != "draining" {
		state += ", draining"
	}
	var transports []string
	for _, t := range d.Transports {
		transports = append(transports, fmt.Sprintf("%s %d", t.Transport, t.Active))
	}
	rate := func(bps float64) string {
		if !d.Rate.Known {
			return "measuring…"
		}
		return formatBits(bps)
	}
	cert := "no TLS listener"
	if len(d.Certificates) > 0 {
		cert = certStatus(d.Certificates[0]) + ": " + certExpiry(d.Certificates[0]) + ", " + d.Certificates[0].Source
	}
	drain := "no"
	if d.Draining {
		drain = "yes: new allocations are refused"
	}
	return []figure{
		{"f-state", "State", state, "st-state-" + d.State},
		{"f-draining", "Draining", drain, ""},
		{"f-allocations", "Live allocations", itoa(d.Allocations), ""},
		{"f-transports", "By transport", strings.Join(transports, " · "), ""},
		{"f-rate-peer", "To peers now", rate(d.Rate.ToPeerBitsPerSecond), ""},
		{"f-rate-client", "To clients now", rate(d.Rate.ToClientBitsPerSecond), ""},
		{"f-relayed", "Relayed since start", formatBytes(d.ToPeer.Bytes + d.ToClient.Bytes), ""},
		{"f-ports", "Relay ports in use", fmt.Sprintf("%d of %d", d.RelayPortsInUse, d.RelayPortsCapacity), ""},
		{"f-cert", "Certificate", cert, certClass(d)},
	}
}

func certClass(d Dashboard) string {
	if len(d.Certificates) == 0 {
		return ""
	}
	return "st-" + d.Certificates[0].Status
}

type figure struct{ ID, Label, Value, Class string }

// pageData is what the page template renders.
type pageData struct {
	D       Dashboard
	Figures []figure
	Tables  []table
	Style   template.CSS
	Script  template.JS
	Poll    int64 // ms
	Message string
}

// cspHash is a CSP source expression for an inline element's content.
func cspHash(content string) string {
	sum := sha256.Sum256([]byte(content))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// setPageHeaders marks an HTML answer: no caching, no framing, no
// resource but this listener's own, and only our inline script and style
// (by hash, so an injected one would not run).
func setPageHeaders(w http.ResponseWriter, withScript bool) {
	script := "'none'"
	if withScript {
		script = cspHash(dashboardJS)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src "+script+"; style-src "+cspHash(dashboardCSS)+
		"; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

// dashboardPage renders the dashboard.
func (s *Server) dashboardPage(w http.ResponseWriter) {
	d := s.dashboard(time.Now())
	var buf bytes.Buffer
	err := pageTemplate.ExecuteTemplate(&buf, "dashboard", pageData{D: d, Figures: figures(d), Tables: dashboardTables(d),
		Style: template.CSS(dashboardCSS), Script: template.JS(dashboardJS), Poll: pollInterval.Milliseconds()})
	if err != nil {
		s.log.Error("rendering the dashboard", "err", err)
		http.Error(w, "the dashboard could not be rendered: see the server log", http.StatusInternalServerError)
		return
	}
	setPageHeaders(w, true)
	_, _ = w.Write(buf.Bytes())
}

// loginPage answers a browser that has not shown the token yet.
func (s *Server) loginPage(w http.ResponseWriter, status int, msg string) {
	var buf bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&buf, "login", pageData{Style: template.CSS(dashboardCSS), Message: msg}); err != nil {
		s.log.Error("rendering the sign-in page", "err", err)
		http.Error(w, "the sign-in page could not be rendered: see the server log", http.StatusInternalServerError)
		return
	}
	setPageHeaders(w, false)
	w.Header().Set("WWW-Authenticate", `Bearer realm="postern admin"`)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

const pageHTML = `{{define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>{{.}}</title>
{{end}}
{{define "login"}}{{template "head" "Postern admin: sign in"}}<style>{{.Style}}</style>
</head>
<body>
<main class="login">
<h1>Postern admin</h1>
<p>This server has an admin token. Enter it to open the dashboard; your browser then keeps a cookie for it until it closes.</p>
{{if .Message}}<p class="error" role="alert">{{.Message}}</p>{{end}}
<form method="post" action="/">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Open the dashboard</button>
</form>
<p class="hint">From a script: <code>curl -H "Authorization: Bearer $TOKEN" http://HOST:PORT/api/dashboard</code>. Endpoints: <a href="/help">/help</a>.</p>
</main>
</body>
</html>
{{end}}
{{define "dashboard"}}{{template "head" "Postern dashboard"}}<style>{{.Style}}</style>
</head>
<body data-poll="{{.Poll}}">
<header>
<h1>Postern dashboard{{if .D.Version}} <span class="version">{{.D.Version}}</span>{{end}}</h1>
<p class="status"><span id="status" role="status">Snapshot of {{.D.Time.Format "15:04:05"}} UTC.</span>
<button id="pause" type="button" aria-pressed="false">Pause updates</button>
<a href="/help">Endpoints</a></p>
</header>
<main>
<section id="summary" aria-labelledby="h-summary" aria-live="polite">
<h2 id="h-summary">Now</h2>
<dl class="figures">
{{range .Figures}}<div><dt>{{.Label}}</dt><dd id="{{.ID}}"{{if .Class}} class="{{.Class}}"{{end}}>{{.Value}}</dd></div>
{{end}}</dl>
</section>
{{range .Tables}}<section aria-labelledby="cap-{{.ID}}">
<div class="scroll" role="region" tabindex="0" aria-labelledby="cap-{{.ID}}">
<table id="{{.ID}}" data-empty="{{.Empty}}">
<caption id="cap-{{.ID}}">{{.Caption}}</caption>
<thead><tr>{{range .Headers}}<th scope="col">{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr{{if .ID}} data-id="{{.ID}}"{{end}}>{{range .Cells}}<td{{if .Class}} class="{{.Class}}"{{end}}>{{.Text}}</td>{{end}}</tr>
{{else}}<tr class="empty"><td colspan="{{len .Headers}}">{{.Empty}}</td></tr>
{{end}}</tbody>
</table>
</div>
</section>
{{end}}</main>
<script>{{.Script}}</script>
</body>
</html>
{{end}}`
