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
