package traversal

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/probe"
)

// pageRow is one door's row of the self-test page as scripts/interop/
// selftest.mjs reads it: the door's name and its STUN, TURN and time cells.
type pageRow struct {
	Door, Stun, Turn, Ms string
}

// pageResult is what selftest.mjs prints.
type pageResult struct {
	Verdict       string
	Rows          []pageRow
	Report        string
	ConsoleErrors []string
}

// selftestOut is where the page's screenshots go: $POSTERN_TRAVERSAL_OUT,
// or the test's scratch directory (gone after the test).
func (w *world) selftestOut() string {
	if d := os.Getenv("POSTERN_TRAVERSAL_OUT"); d != "" {
		return d
	}
	return w.dir
}

// selftestPage opens the self-test page that Postern's tcp+tls listener
// on 443 shows a browser ([selftest] enabled) in headless Chromium in the
// client namespace, through proxy when set, and checks that it concludes
// verdict and that every door's row says what `postern probe` found from
// the same network (probed): TURN works exactly where the probe relayed,
// STUN (UDP doors) exactly where the probe's Binding was answered, and the
// verdict is probe.VerdictOf the probe's results. A screenshot is written
// to selftest-NAME.png in selftestOut.
func (w *world) selftestPage(t *testing.T, name, proxy, verdict string, probed probeResult) {
	t.Helper()
	doors := probe.Doors(probe.DefaultTURNPort, probe.DefaultTURNSPort, probe.DefaultAltPort)
	byKey := map[string]int{}
	for i, r := range probed.Results {
		byKey[r.Transport+" "+strconv.Itoa(r.Port)] = i
	}
	want := make([]pageRow, len(doors))
	relayed := make([]bool, len(doors))
	word := func(ok bool) string {
		if ok {
			return probe.WordDoorWorks
		}
		return probe.WordDoorFails
	}
	for i, d := range doors {
		j, ok := byKey[d.Transport+" "+strconv.Itoa(d.Port)]
		if !ok {
			t.Fatalf("postern probe has no row for door %s", d.Name)
		}
		r := probed.Results[j]
		relayed[i] = r.Relay == probe.RelayYes
		want[i] = pageRow{Door: d.Name, Stun: probe.WordNone, Turn: word(relayed[i])}
		if d.Transport == probe.UDP {
			want[i].Stun = word(r.Reachable)
		}
	}
	if v := probe.VerdictOf(doors, relayed); v != verdict {
		t.Errorf("postern probe's results make the verdict %q, want %q", v, verdict)
	}

	shot := filepath.Join(w.selftestOut(), "selftest-"+name+".png")
	got := w.runPage(t, name, proxy, shot)
	if bad := pageDiff(got, want, verdict); len(bad) > 0 && onlyMissed(got, want) {
		// A door the probe got through but the page's 8 s per door did
		// not (a loaded machine): the page runs once more, and says so.
		// A door the page finds open that the firewall closes fails at once.
		t.Logf("the page missed doors the probe got through, running it once more: %s", strings.Join(bad, "; "))
		got = w.runPage(t, name+"-again", proxy, shot)
	}
	for _, p := range pageDiff(got, want, verdict) {
		t.Error(p)
	}
	if len(got.ConsoleErrors) != 0 {
		t.Errorf("the page logged errors: %v", got.ConsoleErrors)
	}
	if !strings.Contains(got.Report, "Verdict: "+verdict) {
		t.Errorf("the report to copy does not hold the verdict:\n%s", got.Report)
	}
	t.Logf("self-test page: %q; rows %v; screenshot %s", got.Verdict, got.Rows, shot)
}

// pageDiff lists where the page differs from the verdict and rows wanted.
func pageDiff(got pageResult, want []pageRow, verdict string) []string {
	var out []string
	if got.Verdict != verdict {
		out = append(out, fmt.Sprintf("the page says %q, want %q", got.Verdict, verdict))
	}
	if len(got.Rows) != len(want) {
		return append(out, fmt.Sprintf("the page shows %d doors, want %d: %v", len(got.Rows), len(want), got.Rows))
	}
	for i, w := range want {
		g := got.Rows[i]
		if g.Door != w.Door || g.Stun != w.Stun || g.Turn != w.Turn {
			out = append(out, fmt.Sprintf("door %s: the page shows STUN %s, TURN %s; postern probe found STUN %s, TURN %s",
				w.Door, g.Stun, g.Turn, w.Stun, w.Turn))
			continue
		}
		if _, err := strconv.Atoi(g.Ms); (err == nil) != (w.Turn == probe.WordDoorWorks) {
			out = append(out, fmt.Sprintf("door %s: time %q with TURN %s", w.Door, g.Ms, g.Turn))
		}
	}
	return out
}

// onlyMissed reports whether every difference of got from want is a door
// the page found blocked where the probe got through.
func onlyMissed(got pageResult, want []pageRow) bool {
	if len(got.Rows) != len(want) {
		return false
	}
	for i, w := range want {
		g := got.Rows[i]
		if g.Door != w.Door ||
			(g.Stun != w.Stun && g.Stun != probe.WordDoorFails) ||
			(g.Turn != w.Turn && g.Turn != probe.WordDoorFails) {
			return false
		}
	}
	return true
}

// runPage runs scripts/interop/selftest.mjs in the client namespace on the
// page of https://SERVER/ and returns what it read off the page.
func (w *world) runPage(t *testing.T, name, proxy, shot string) pageResult {
	t.Helper()
	exe, err := exec.LookPath(chromium())
	if err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(w.dir, "chromium-page-"+name)
	// Each blocked door takes the page's 8 s per candidate (STUN, then
	// TURN): at most 6 doors x 16 s, with a margin.
	const pageTimeout = 150 * time.Second
	cfg := map[string]any{
		"url": "https://" + serverAddr + "/", "executablePath": exe, "userDataDir": profile,
		"extraFlags": w.chromiumFlags(proxy), "screenshot": shot, "timeoutMs": pageTimeout.Milliseconds(),
	}
	stdout, stderr, took, err := w.runDriver(t, "selftest.mjs", "page-"+name, cfg, profile, pageTimeout+30*time.Second)
	var res pageResult
	if err != nil || json.Unmarshal([]byte(strings.TrimSpace(stdout)), &res) != nil {
		t.Fatalf("self-test page driver: %v after %v\nstdout:\n%s\nstderr:\n%s", err, took.Round(time.Millisecond),
			tail(stdout, 20), tail(stderr, 40))
	}
	t.Logf("self-test page read in %v", took.Round(100*time.Millisecond))
	return res
}
