package admin

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/relay"
)

func TestRateMeter(t *testing.T) {
	var m rateMeter
	t0 := time.Unix(1_700_000_000, 0)
	if r := m.observe(t0, 1000, 2000); r.Known {
		t.Errorf("first sample: %+v, want unknown", r)
	}
	// Under a second later: still unknown, and the window does not move.
	if r := m.observe(t0.Add(500*time.Millisecond), 5000, 5000); r.Known {
		t.Errorf("after 0.5 s: %+v, want unknown", r)
	}
	r := m.observe(t0.Add(2*time.Second), 1000+250_000, 2000+1_000_000)
	if !r.Known || r.WindowSeconds != 2 || r.ToPeerBitsPerSecond != 1_000_000 || r.ToClientBitsPerSecond != 4_000_000 {
		t.Errorf("after 2 s: %+v, want 1 Mbit/s to peers, 4 Mbit/s to clients over 2 s", r)
	}
	// A second viewer right after gets the same measurement.
	if r2 := m.observe(t0.Add(2100*time.Millisecond), 1_000_000_000, 0); r2 != r {
		t.Errorf("0.1 s later: %+v, want the last rate %+v", r2, r)
	}
	// Idle: 0 bit/s; a counter going backwards (never expected) is 0, not huge.
	r = m.observe(t0.Add(3*time.Second), 1000+250_000, 0)
	if !r.Known || r.ToPeerBitsPerSecond != 0 || r.ToClientBitsPerSecond != 0 {
		t.Errorf("idle second: %+v, want 0 and 0", r)
	}
}

// TestDashboardFormatsAgree runs the page script's formatters in node and
// compares them with the server's, which render the first paint: the two
// must write the same numbers the same way.
func TestDashboardFormatsAgree(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found (apt-get install nodejs): the script's formatters are not compared with the server's")
	}
	bits := []float64{0, 1, 999, 1000, 1234, 9999, 12_345, 99_949, 123_456, 1e6, 4.5e7, 9.87e9, 1.2e12, 3e15, 7e18}
	byteCounts := []uint64{0, 999, 1000, 1500, 10_700, 999_999, 123_456_789, 1 << 40}
	ages := []int64{0, 59, 60, 61, 3599, 3600, 3661, 86399, 86400, 200_000}
	doors := [][2]any{{"udp", 3478}, {"tls", 443}, {"tcp", 0}}
	certs := []Certificate{newCertificate(certInfoAt(10), time.Now()), newCertificate(certInfoAt(1.5), time.Now()),
		newCertificate(certInfoAt(-3), time.Now()), {Status: "pending"}}
	in, _ := json.Marshal(map[string]any{"bits": bits, "bytes": byteCounts, "ages": ages, "doors": doors, "certs": certs})
	// A stand-in for the page: the script looks up a few elements, then
	// stays idle while the document is hidden.
	prog := `const el = () => ({ addEventListener() {}, setAttribute() {}, textContent: '', className: '', dataset: {} });
globalThis.document = { body: { dataset: { poll: '2000' } }, visibilityState: 'hidden', getElementById: el };
globalThis.window = globalThis;
require('vm').runInThisContext(require('fs').readFileSync('web/dashboard.js', 'utf8'));
const f = window.posternDashboard, x = JSON.parse(process.argv[1]);
console.log(JSON.stringify({ bits: x.bits.map(f.fmtBits), bytes: x.bytes.map(f.fmtBytes), ages: x.ages.map(f.fmtAge),
  doors: x.doors.map(([t, p]) => f.door(t, p)), certs: x.certs.map(f.certExpiry) }));
process.exit(0);`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "-e", prog, string(in)).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var js map[string][]string
	if err := json.Unmarshal(out, &js); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	check := func(kind string, i int, input any, goes string) {
		t.Helper()
		if i >= len(js[kind]) || js[kind][i] != goes {
			t.Errorf("%s %v: server writes %q, script %q", kind, input, goes, strings.Join(js[kind][i:min(i+1, len(js[kind]))], ""))
		}
	}
	for i, v := range bits {
		check("bits", i, v, formatBits(v))
	}
	for i, v := range byteCounts {
		check("bytes", i, v, formatBytes(v))
	}
	for i, v := range ages {
		check("ages", i, v, formatAge(v))
	}
	for i, v := range doors {
		check("doors", i, v, door(v[0].(string), v[1].(int)))
	}
	for i, v := range certs {
		check("certs", i, v, certExpiry(v))
	}
}

// certInfoAt is a certificate expiring days from now.
func certInfoAt(days float64) relay.CertificateInfo {
	return relay.CertificateInfo{Source: "configured", Names: []string{"turn.example"},
		NotAfter: time.Now().Add(time.Duration(days * 24 * float64(time.Hour)))}
}

func TestFormats(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want string
	}{{0, "0 bit/s"}, {999, "999 bit/s"}, {999.6, "1.00 kbit/s"}, {1234, "1.23 kbit/s"}, {9999, "10.0 kbit/s"},
		{99_960, "100 kbit/s"}, {999_600, "1.00 Mbit/s"}, {4.5e7, "45.0 Mbit/s"}, {7e18, "7000 Pbit/s"}} {
		if got := formatBits(tt.v); got != tt.want {
			t.Errorf("formatBits(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
	for _, tt := range []struct {
		s    int64
		want string
	}{{59, "59 s"}, {61, "1 min"}, {3661, "1 h 1 min"}, {200_000, "2 d 7 h"}} {
		if got := formatAge(tt.s); got != tt.want {
			t.Errorf("formatAge(%d) = %q, want %q", tt.s, got, tt.want)
		}
	}
}

// TestDashboardRenderingsAgree feeds one snapshot to the script's tables
// and figures (in node) and to the server's: the first paint and every
// update must show the same text in the same cells.
func TestDashboardRenderingsAgree(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found (apt-get install nodejs): the script's rendering is not compared with the server's")
	}
	now := time.Now()
	d := Dashboard{
		Time: now.UTC(), Version: "x", State: "ready", Draining: true, Allocations: 2, RelayPortsInUse: 2, RelayPortsCapacity: 100,
		Transports: []TransportCount{{"udp", 1}, {"tls", 1}},
		Listeners:  []ListenerRow{{Listener: "udp://[::]:3478", Port: 3478, Transport: "udp", Active: 1, Created: 9}},
		ToPeer:     Traffic{Bytes: 12_345}, ToClient: Traffic{Bytes: 1},
		Rate:                  Rate{Known: true, WindowSeconds: 2, ToPeerBitsPerSecond: 12_345.6, ToClientBitsPerSecond: 0},
		TopUsersByAllocations: []UserUsage{{"alice", 2, 5000}}, TopUsersByBytes: []UserUsage{{"alice", 2, 5000}},
		Sessions: []DashboardSession{{ID: 3, User: "alice", Transport: "tls", Listener: "tcp+tls://0.0.0.0:443",
			Client: "[2001:db8::1]:5000", Relayed: "192.0.2.1:40000", AgeSeconds: 3700, Bytes: 5000}},
		SessionsTotal: 60,
		Drops:         []ReasonCount{{"policy", 3}},
		AuthFailures:  []ReasonCount{},
		RecentAuthFailures: []AuthFailure{{Time: now.UTC(), Client: "192.0.2.9:1", Transport: "udp", Reason: "expired",
			Username: "<b>é</b>"}},
		Certificates: []Certificate{newCertificate(certInfoAt(2), now), {Source: "acme", Names: []string{"a.example"}, Status: "pending"}},
	}
	in, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	prog := `const el = () => ({ addEventListener() {}, setAttribute() {}, textContent: '', className: '', dataset: {} });
globalThis.document = { body: { dataset: { poll: '2000' } }, visibilityState: 'hidden', getElementById: el };
globalThis.window = globalThis;
require('vm').runInThisContext(require('fs').readFileSync('web/dashboard.js', 'utf8'));
const f = window.posternDashboard, d = JSON.parse(process.argv[1]);
console.log(JSON.stringify({ tables: f.tables(d), figures: f.figures(d) }));
process.exit(0);`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "-e", prog, string(in)).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var js struct {
		Tables map[string]struct {
			Caption *string `json:"caption"`
			Rows    []struct {
				ID    string `json:"id"`
				Cells []struct {
					Text string `json:"text"`
					Cls  string `json:"cls"`
				} `json:"cells"`
			} `json:"rows"`
		} `json:"tables"`
		Figures map[string][2]string `json:"figures"`
	}
	if err := json.Unmarshal(out, &js); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	goTables := dashboardTables(d)
	if len(js.Tables) != len(goTables) {
		t.Errorf("script renders %d tables, server %d", len(js.Tables), len(goTables))
	}
	for _, gt := range goTables {
		jt, ok := js.Tables[gt.ID]
		if !ok {
			t.Errorf("script does not render table %s", gt.ID)
			continue
		}
		if jt.Caption != nil && *jt.Caption != gt.Caption {
			t.Errorf("%s caption: server %q, script %q", gt.ID, gt.Caption, *jt.Caption)
		}
		if len(jt.Rows) != len(gt.Rows) {
			t.Errorf("%s: server %d rows, script %d", gt.ID, len(gt.Rows), len(jt.Rows))
			continue
		}
		for i, gr := range gt.Rows {
			jr := jt.Rows[i]
			if jr.ID != gr.ID || len(jr.Cells) != len(gr.Cells) {
				t.Errorf("%s row %d: server id %q %d cells, script id %q %d cells", gt.ID, i, gr.ID, len(gr.Cells), jr.ID, len(jr.Cells))
				continue
			}
			for j, gc := range gr.Cells {
				if jc := jr.Cells[j]; jc.Text != gc.Text || jc.Cls != gc.Class {
					t.Errorf("%s row %d cell %d: server %q (%q), script %q (%q)", gt.ID, i, j, gc.Text, gc.Class, jc.Text, jc.Cls)
				}
			}
		}
	}
	goFigures := figures(d)
	if len(js.Figures) != len(goFigures) {
		t.Errorf("script renders %d figures, server %d", len(js.Figures), len(goFigures))
	}
	for _, gf := range goFigures {
		if jf := js.Figures[gf.ID]; jf != [2]string{gf.Value, gf.Class} {
			t.Errorf("figure %s: server %q (%q), script %q (%q)", gf.ID, gf.Value, gf.Class, jf[0], jf[1])
		}
	}
}
