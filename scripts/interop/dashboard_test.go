package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

// dashboardToken is the admin token of the dashboard test's server.
const dashboardToken = "dashboard-test-token"

// dashboardStep is one JSON line of dashboard.mjs.
type dashboardStep struct {
	Step   string `json:"step"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
	HTML   string `json:"html"`
	// no-token
	Status        int `json:"status"`
	Form          int `json:"form"`
	SessionsTable int `json:"sessionsTable"`
	// signed-in
	URL              string `json:"url"`
	APIWithoutCookie int    `json:"apiWithoutCookie"`
	CookieToScript   string `json:"cookieVisibleToScript"`
	// row, gone
	Cells       []string `json:"cells"`
	Doors       []string `json:"doors"`
	Allocations string   `json:"allocations"`
	Empty       int      `json:"empty"`
	Ms          int      `json:"ms"`
	// keyboard
	Focused       string   `json:"focused"`
	Paused        string   `json:"paused"`
	Resumed       string   `json:"resumed"`
	Live          string   `json:"live"`
	Captions      int      `json:"captions"`
	Tables        int      `json:"tables"`
	ConsoleErrors []string `json:"consoleErrors"`
}

// TestDashboardBrowser loads the admin dashboard in headless Chromium: without the token it gets 401; with
// /?token= it is signed in (a cookie the page's script cannot read) and sees, without reloading, a pion TURN
// client's allocation appear in the live-allocations table and leave it once the client deletes it. The relay
// and admin servers run in-process on loopback. A screenshot goes to $POSTERN_INTEROP_OUT (or the test's
// temporary directory): docs/dashboard.png in the README is one.
func TestDashboardBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: skipped in -short mode")
	}
	node, chromium := browserTools(t)
	f := startDashboardServer(t)

	dir := t.TempDir()
	out := os.Getenv("POSTERN_INTEROP_OUT")
	if out == "" {
		out = dir
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(out, "dashboard.png")
	profile := filepath.Join(dir, "chromium-profile")
	cfg, _ := json.Marshal(map[string]any{"base": f.base, "token": dashboardToken, "executablePath": chromium,
		"userDataDir": profile, "screenshot": shot, "timeoutMs": 15000})
	cfgPath := filepath.Join(dir, "dashboard.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "dashboard.mjs", cfgPath)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr turntest.SyncBuffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) } // as in driveBrowser
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	steps := make(chan dashboardStep)
	go func() {
		defer close(steps)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var s dashboardStep
			if json.Unmarshal(sc.Bytes(), &s) == nil && s.Step != "" {
				steps <- s
			}
		}
	}()
	defer func() {
		_ = stdin.Close()
		err := cmd.Wait()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		killByArg(t, "--user-data-dir="+profile)
		if err != nil {
			t.Errorf("dashboard driver: %v\n%s", err, indent(tailLines(stderr.String(), 40), "    "))
		}
	}()
	next := func(want string) dashboardStep {
		t.Helper()
		select {
		case s, ok := <-steps:
			if !ok {
				t.Fatalf("dashboard driver ended before step %s:\n%s", want, indent(tailLines(stderr.String(), 40), "    "))
			}
			if s.Step != want {
				t.Fatalf("dashboard driver: step %q, want %q: %+v", s.Step, want, s)
			}
			return s
		case <-time.After(60 * time.Second):
			t.Fatalf("dashboard driver: no step %s within 60 s\n%s", want, indent(tailLines(stderr.String(), 40), "    "))
		}
		return dashboardStep{}
	}
	send := func(cmd map[string]any) {
		t.Helper()
		b, _ := json.Marshal(cmd)
		if _, err := fmt.Fprintf(stdin, "%s\n", b); err != nil {
			t.Fatalf("dashboard driver stdin: %v", err)
		}
	}

	if s := next("no-token"); s.Status != 401 || s.Form != 1 || s.SessionsTable != 0 {
		t.Errorf("without the token: status %d, %d token fields, %d sessions tables; want 401, a sign-in form, no data", s.Status, s.Form, s.SessionsTable)
	}
	s := next("signed-in")
	if s.Status != 200 || s.URL != f.base+"/" || s.APIWithoutCookie != 401 || s.CookieToScript != "" || len(s.ConsoleErrors) != 0 {
		t.Errorf("signed in: status %d at %q, /api/dashboard without the cookie %d, cookie seen by script %q, console errors %v;"+
			" want 200 at %s/ (token gone from the URL), 401, an HttpOnly cookie, no errors", s.Status, s.URL, s.APIWithoutCookie,
			s.CookieToScript, s.ConsoleErrors, f.base)
	}

	// What the screenshot shows besides: bob over TCP, a wrong password, traffic through alice's allocation.
	bob := turntest.Client(t, turn.NewSTUNConn(dialTCP(t, f.tcp)), f.tcp, turn.ClientConfig{Username: "bob", Password: "builder", Realm: testRealmDash})
	if _, err := bob.Allocate(); err != nil {
		t.Fatalf("bob's TCP allocation: %v", err)
	}
	bad := turntest.Client(t, turntest.ListenUDP(t), f.udp, turn.ClientConfig{Username: "mallory", Password: "guess", Realm: testRealmDash})
	if _, err := bad.Allocate(); err == nil {
		t.Fatal("allocation with a wrong password succeeded")
	}
	alice := turntest.Client(t, turntest.ListenUDP(t), f.udp, turn.ClientConfig{Username: "alice", Password: "wonderland", Realm: testRealmDash})
	rc, err := alice.Allocate()
	if err != nil {
		t.Fatalf("alice's allocation: %v", err)
	}
	ss := f.relay.Sessions("alice")
	if len(ss) != 1 {
		t.Fatalf("alice has %d sessions, want 1", len(ss))
	}
	id := strconv.FormatUint(ss[0].ID, 10)
	stopTraffic := relayTraffic(t, rc)

	send(map[string]any{"wait": "row", "id": id})
	row := next("row")
	stopTraffic()
	if !row.OK {
		t.Fatalf("allocation %s never appeared on the dashboard: %s\n%s", id, row.Reason, row.HTML)
	}
	t.Logf("allocation %s appeared on the dashboard after %d ms: %v; screenshot %s", id, row.Ms, row.Cells, shot)
	if len(row.Cells) != 7 || row.Cells[0] != id || row.Cells[1] != "alice" || row.Cells[2] != "UDP "+portString(f.udp) ||
		row.Cells[4] != rc.LocalAddr().String() {
		t.Errorf("row of allocation %s: %q, want ID, alice, UDP %s, client, %s, ...", id, row.Cells, portString(f.udp), rc.LocalAddr())
	}
	if row.Allocations != "2" || !containsPrefix(row.Doors, "UDP "+portString(f.udp)+"udp://"+f.udp+"1") {
		t.Errorf("figures: %q allocations, doors %q; want 2, and UDP %s with 1 live", row.Allocations, row.Doors, portString(f.udp))
	}

	if err := rc.Close(); err != nil { // Refresh with lifetime 0 (RFC 8656 §7.3)
		t.Fatal(err)
	}
	send(map[string]any{"wait": "gone", "id": id})
	gone := next("gone")
	if !gone.OK {
		t.Fatalf("allocation %s stayed on the dashboard after the client deleted it: %s\n%s", id, gone.Reason, gone.HTML)
	}
	t.Logf("allocation %s left the dashboard %d ms after the delete", id, gone.Ms)
	if gone.Allocations != "1" {
		t.Errorf("after the delete the dashboard shows %q allocations, want 1 (bob's)", gone.Allocations)
	}

	send(map[string]any{"done": true})
	kb := next("keyboard")
	if kb.Focused != "pause" || kb.Paused != "true" || kb.Resumed != "false" || kb.Live != "polite" || kb.Captions != kb.Tables ||
		kb.Tables < 8 || len(kb.ConsoleErrors) != 0 {
		t.Errorf("accessibility: first Tab on %q, pause %q then %q, aria-live %q, %d captions for %d tables, console errors %v;"+
			" want the pause button, true then false, polite, a caption per table (8 or more), none",
			kb.Focused, kb.Paused, kb.Resumed, kb.Live, kb.Captions, kb.Tables, kb.ConsoleErrors)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
		t.Errorf("no screenshot at %s: %v", shot, err)
	}
}

const testRealmDash = "postern.test"

// browserTools returns node and Chromium, or skips (fails under POSTERN_INTEROP_REQUIRE) naming what is missing.
func browserTools(t *testing.T) (node, chromium string) {
	t.Helper()
	node = lookTool(t, toolNode)
	chromium = os.Getenv("POSTERN_CHROMIUM")
	if chromium == "" {
		chromium = toolChromium.name
	}
	if _, err := exec.LookPath(chromium); err != nil {
		skipOrFail(t, fmt.Sprintf("interop: %s not found: %s", chromium, toolChromium.hint))
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		skipOrFail(t, "interop: playwright-core not installed: run `npm ci` in scripts/interop (scripts/test does)")
	}
	return node, chromium
}

// dashboardServer is a relay (UDP and TCP on loopback) with an admin listener and token in front of it.
type dashboardServer struct {
	relay    *relay.Server
	base     string // http://127.0.0.1:PORT of the admin listener
	udp, tcp string
}

func startDashboardServer(t *testing.T) *dashboardServer {
	t.Helper()
	a, err := auth.New(auth.Config{Realm: testRealmDash, Users: map[string]string{"alice": "wonderland", "bob": "builder"}})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := relay.New(relay.Config{
		Listeners:         []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:0"}, {Kind: relay.TCP, Addr: "127.0.0.1:0"}, {Kind: relay.TLS, Addr: "127.0.0.1:0"}},
		ListenersExplicit: true,
		Auth:              a,
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		// Peers are loopback sockets at ephemeral ports, which the own-address rule lets through only inside the
		// relay range (relay/self.go): the range covers Linux's ephemeral ports.
		RelayPorts: allocations.PortRange{Low: 32768, High: 65535},
		Logger:     quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	turntest.Start(t, r)
	adm, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Token: dashboardToken, Relay: r, Version: "dashboard-test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	if err := adm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		select {
		case <-adm.Done():
		case <-time.After(10 * time.Second):
			t.Error("admin listener did not stop within 10 s")
		}
	})
	f := &dashboardServer{relay: r, base: "http://" + adm.Addr().String()}
	for _, b := range r.Addrs() {
		switch b.Kind {
		case relay.UDP:
			f.udp = b.Addr.String()
		case relay.TCP:
			f.tcp = b.Addr.String()
		}
	}
	return f
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// relayTraffic sends a datagram of 1000 bytes through rc to an echo peer every 10 ms (at most 3000, 30 s) until
// the returned function is called, so that the dashboard has a bit rate to show.
func relayTraffic(t *testing.T, rc net.PacketConn) (stop func()) {
	t.Helper()
	peer := turntest.EchoPeer(t)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		buf := make([]byte, 2048)
		msg := make([]byte, 1000)
		for range 3000 {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if _, err := rc.WriteTo(msg, peer.LocalAddr()); err != nil {
				return
			}
			_ = rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			_, _, _ = rc.ReadFrom(buf)
		}
	}()
	return func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-finished
		_ = rc.SetReadDeadline(time.Time{})
	}
}

func portString(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
