package interop

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/probe"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/selftest"
)

// TestSelfTestPage: headless Chromium opens the self-test page on the TLS
// port of a postern on loopback with every door open, and the page says
// calls will work, with every door's TURN row saying it works.
func TestSelfTestPage(t *testing.T) {
	node, chrome := browserTools(t)
	dir := t.TempDir()
	cert := newCert(t, dir)
	pair, err := tls.LoadX509KeyPair(cert.certPath, cert.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	turnPort, turnsPort, altPort := turntest.FreePort(t), turntest.FreePort(t), turntest.FreePort(t)
	at := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	const secret = "selftest-interop-secret"
	a, err := auth.New(auth.Config{Realm: "postern.test", Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	page, err := selftest.New(selftest.Config{Enabled: true, Secret: secret, TURNPort: turnPort, TURNSPort: turnsPort, AltPort: altPort})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{
		Listeners: []relay.ListenSpec{
			{Kind: relay.UDP, Addr: at(turnPort)}, {Kind: relay.TCP, Addr: at(turnPort)},
			{Kind: relay.TLS, Addr: at(turnsPort)},
			{Kind: relay.UDP, Addr: at(altPort)}, {Kind: relay.TCPTLS, Addr: at(altPort)},
		},
		ListenersExplicit: true,
		Auth:              a,
		TLSCert:           &pair,
		Web:               relay.WebConfig{Page: page},
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		RelayPorts:        allocations.PortRange{Low: 32768, High: 65535},
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	turntest.Start(t, r)

	outDir := os.Getenv("POSTERN_SELFTEST_OUT")
	if outDir == "" {
		outDir = dir
	}
	shot := filepath.Join(outDir, "selftest.png")
	cfg, _ := json.Marshal(map[string]any{
		"url": "https://" + at(altPort) + selftest.PagePath, "executablePath": chrome, "userDataDir": filepath.Join(dir, "profile"),
		"extraFlags": []string{"--ignore-certificate-errors-spki-list=" + cert.spki}, "screenshot": shot, "timeoutMs": 90000,
	})
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	ctxCmd := exec.Command(node, "selftest.mjs", cfgPath)
	ctxCmd.Stderr = os.Stderr
	ctxCmd.WaitDelay = 5 * time.Second
	timer := time.AfterFunc(150*time.Second, func() { _ = ctxCmd.Process.Signal(os.Interrupt) })
	defer timer.Stop()
	out, err := ctxCmd.Output()
	if err != nil {
		t.Fatalf("driver: %v\n%s", err, out)
	}
	var got struct {
		Verdict, Live, Caption, Report, Focused string
		Headers                                 int
		Rows                                    []struct{ Door, Stun, Turn, Ms string }
		ConsoleErrors                           []string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("driver output %q: %v", out, err)
	}
	t.Logf("verdict %q; rows %+v; screenshot %s", got.Verdict, got.Rows, shot)
	if got.Verdict != probe.WordCallsWork {
		t.Errorf("verdict %q, want %q", got.Verdict, probe.WordCallsWork)
	}
	doors := probe.Doors(turnPort, turnsPort, altPort)
	if len(got.Rows) != len(doors) {
		t.Fatalf("%d rows, want %d", len(got.Rows), len(doors))
	}
	for i, d := range doors {
		row := got.Rows[i]
		if row.Door != d.Name || row.Turn != probe.WordDoorWorks {
			t.Errorf("row %d: %+v, want %s: TURN %s", i, row, d.Name, probe.WordDoorWorks)
		}
		if _, err := strconv.Atoi(row.Ms); err != nil {
			t.Errorf("row %s: time %q is not a number of ms", d.Name, row.Ms)
		}
	}
	if got.Live != "polite" || got.Caption == "" || got.Headers != 5 || !strings.Contains(got.Report, "Verdict: "+probe.WordCallsWork) {
		t.Errorf("accessibility/report: aria-live %q, caption %q, %d column headers, report %q", got.Live, got.Caption, got.Headers, got.Report)
	}
	if got.Focused != "run" || len(got.ConsoleErrors) != 0 {
		t.Errorf("first Tab on %q, console errors %v; want the run button and none (a CSP violation or script error shows here)", got.Focused, got.ConsoleErrors)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
		t.Errorf("no screenshot at %s: %v", shot, err)
	}
}
