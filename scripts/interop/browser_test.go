package interop

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// browserMessages is how many data channel messages each browser case sends each way.
const browserMessages = 100

// iceServer is RTCIceServer as the page takes it.
type iceServer struct {
	URLs       string `json:"urls"`
	Username   string `json:"username"`
	Credential string `json:"credential"`
}

// browserCase is one page run: a TURN URL and the relay protocol the selected pair must show.
type browserCase struct {
	Name       string      `json:"name"`
	ICEServers []iceServer `json:"iceServers"`
	// RTCConfiguration, when set, is handed to new RTCPeerConnection as it
	// is (plus iceTransportPolicy 'relay') instead of ICEServers: the JSON
	// `postern ice-servers` prints.
	RTCConfiguration json.RawMessage `json:"rtcConfiguration,omitempty"`
	// WantRelayProtocol is the relay protocol the selected pair must use;
	// empty accepts any.
	WantRelayProtocol string `json:"wantRelayProtocol"`
	Messages          int    `json:"messages"`
	TimeoutMs         int    `json:"timeoutMs"`
	// RetryTimeout runs the case once more if it connected and timed out
	// (a Chromium stall, see doc.go); the report says so.
	RetryTimeout bool `json:"retryTimeout"`

	transport string // for the report line
	port      int
	negative  bool // must fail: wrong password
}

// browserResult is one JSON line from driver.mjs (the object web/relay.js resolves with).
type browserResult struct {
	Name          string              `json:"name"`
	OK            bool                `json:"ok"`
	Reason        string              `json:"reason"`
	Pair          string              `json:"pair"`
	RelayProtocol string              `json:"relayProtocol"`
	Sent          int                 `json:"sent"`
	Received      int                 `json:"received"`
	Ms            int                 `json:"ms"`
	ICEErrors     []string            `json:"iceErrors"`
	Candidates    map[string][]string `json:"candidates"`
	ConsoleErrors []string            `json:"consoleErrors"`
	// RetriedAfter is the first attempt's reason when the case was run
	// twice, FirstCandidates its candidates (to find its server log lines).
	RetriedAfter    string              `json:"retriedAfter"`
	FirstCandidates map[string][]string `json:"firstCandidates"`
}

// mintREST makes TURN REST API credentials (draft-uberti-behave-turn-rest): username "expiry:user", password
// base64(HMAC-SHA1(secret, username)). Written here rather than imported so the suite checks the server against
// an independent implementation.
func mintREST(secret, user string, ttl time.Duration) (username, password string) {
	username = strconv.FormatInt(time.Now().Add(ttl).Unix(), 10) + ":" + user
	return username, restPassword(secret, username)
}

// restPassword is base64(HMAC-SHA1(secret, username)).
func restPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func browserCases(t *testing.T, tg *target) []browserCase {
	lt, rest := tg.lt.ports, tg.rest.ports
	url := func(scheme string, port int, transport string) string {
		return fmt.Sprintf("%s:127.0.0.1:%d?transport=%s", scheme, port, transport)
	}
	ltServer := func(u string) []iceServer {
		return []iceServer{{URLs: u, Username: ltUser, Credential: ltPassword}}
	}
	restName, restPass := mintREST(restSecret, restUser, time.Hour)
	cs := []browserCase{
		{Name: "udp-rfc", ICEServers: ltServer(url("turn", lt.plain, "udp")), WantRelayProtocol: "udp", transport: "udp", port: lt.plain},
		{Name: "tcp-rfc", ICEServers: ltServer(url("turn", lt.plain, "tcp")), WantRelayProtocol: "tcp", transport: "tcp", port: lt.plain},
		{Name: "tls-rfc", ICEServers: ltServer(url("turns", lt.tls, "tcp")), WantRelayProtocol: "tls", transport: "tls", port: lt.tls},
		{Name: "udp-shared", ICEServers: ltServer(url("turn", lt.shared, "udp")), WantRelayProtocol: "udp", transport: "udp", port: lt.shared},
		{Name: "tcp-shared", ICEServers: ltServer(url("turn", lt.shared, "tcp")), WantRelayProtocol: "tcp", transport: "tcp", port: lt.shared},
		{Name: "tls-shared", ICEServers: ltServer(url("turns", lt.shared, "tcp")), WantRelayProtocol: "tls", transport: "tls", port: lt.shared},
		{Name: "udp-rfc-rest", ICEServers: []iceServer{{URLs: url("turn", rest.plain, "udp"), Username: restName, Credential: restPass}},
			WantRelayProtocol: "udp", transport: "udp", port: rest.plain},
		{Name: "wrong-password", ICEServers: []iceServer{{URLs: url("turn", lt.plain, "udp"), Username: ltUser, Credential: ltPassword + "-wrong"}},
			WantRelayProtocol: "udp", transport: "udp", port: lt.plain, negative: true},
	}
	if tg.bin != "" {
		cs = append(cs, iceServersCase(t, tg))
	}
	for i := range cs {
		cs[i].Messages = browserMessages
		cs[i].TimeoutMs = 20000
		cs[i].RetryTimeout = !cs[i].negative
	}
	return cs
}

// iceServersCase runs `postern ice-servers` for every listener of the server
// and hands its JSON verbatim to RTCPeerConnection: the page must connect
// with it. Chromium picks the relay protocol, so any is accepted.
func iceServersCase(t *testing.T, tg *target) browserCase {
	t.Helper()
	p := tg.rest.ports
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tg.bin, "ice-servers", "--host", "127.0.0.1", "--secret", restSecret, "--user", restUser,
		"--ttl", "1h", "--ports", fmt.Sprintf("udp:%d,tcp:%d,tls:%d,udp:%d,tcp+tls:%d", p.plain, p.plain, p.tls, p.shared, p.shared))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("postern ice-servers: %v\n%s", err, out)
	}
	var conf struct {
		ICEServers []struct {
			URLs []string `json:"urls"`
		} `json:"iceServers"`
	}
	if err := json.Unmarshal(out, &conf); err != nil || len(conf.ICEServers) != 1 || len(conf.ICEServers[0].URLs) == 0 {
		t.Fatalf("postern ice-servers printed %q (%v): want {\"iceServers\":[{\"urls\":[...],...}]}", out, err)
	}
	return browserCase{Name: "ice-servers-json", RTCConfiguration: json.RawMessage(bytes.TrimSpace(out)),
		transport: "any", port: p.plain}
}

// urls describes the case's TURN URLs for reports.
func (c browserCase) urls() string {
	if len(c.RTCConfiguration) > 0 {
		return string(c.RTCConfiguration)
	}
	return c.ICEServers[0].URLs
}

// driverConfig is the JSON file driver.mjs reads.
type driverConfig struct {
	URL            string        `json:"url"`
	ExecutablePath string        `json:"executablePath"`
	UserDataDir    string        `json:"userDataDir"`
	ExtraFlags     []string      `json:"extraFlags"`
	Cases          []browserCase `json:"cases"`
}

func runBrowserCases(t *testing.T, rep *report, tg *target, dir string) {
	cases := browserCases(t, tg)
	// Any skip is recorded once per case, so the summary says how many browser cases did not run.
	results, skip := driveBrowser(t, tg, dir, cases)
	for _, c := range cases {
		rep.runCase(t, c.Name, false, func(t *testing.T, info *caseInfo) {
			info.transport, info.port = c.transport, c.port
			if skip != "" {
				info.note = skip
				skipOrFail(t, skip)
			}
			res, ok := results[c.Name]
			if !ok {
				info.fail(t, "no result from the browser driver", "case %s\n%s", c.Name, tg.logTail(40))
				return
			}
			info.pair = res.Pair
			info.took = time.Duration(res.Ms) * time.Millisecond
			detail := func() string {
				return fmt.Sprintf("url=%s sent=%d received=%d relayProtocol=%q page took %dms\nICE errors: %v\ncandidates: %v\nconsole errors: %v\n%s",
					c.urls(), res.Sent, res.Received, res.RelayProtocol, res.Ms, res.ICEErrors, res.Candidates, res.ConsoleErrors,
					tg.logExcerpt(candidateAddrs(res.Candidates), 40))
			}
			if c.negative {
				// The check must fail, and say why: no relay candidate, because the server rejected the
				// credentials with 401 (RFC 8489 §9.2.4: MESSAGE-INTEGRITY that does not verify → 401).
				switch {
				case res.OK:
					info.fail(t, "wrong password was accepted", "%s", detail())
				case !strings.Contains(res.Reason, "no relay candidate"):
					info.fail(t, "failed for another reason: "+res.Reason, "%s", detail())
				case !strings.Contains(strings.Join(res.ICEErrors, " "), " 401 "):
					info.fail(t, "no 401 reported by the browser", "reason %q\n%s", res.Reason, detail())
				default:
					info.pair = "none (rejected as expected: " + firstOr(res.ICEErrors, res.Reason) + ")"
					t.Logf("failed as expected: %s", res.Reason)
				}
				return
			}
			if res.RetriedAfter != "" {
				// Visible in the report even when the second attempt passed.
				info.note = "run twice; first attempt: " + res.RetriedAfter
				t.Logf("first attempt failed, case run again: %s\n%s", res.RetriedAfter, tg.logExcerpt(candidateAddrs(res.FirstCandidates), 40))
			}
			if !res.OK {
				info.fail(t, res.Reason, "%s", detail())
			}
		})
	}
}

// candidateAddrs returns the "ip:port" of each gathered candidate ("candidate:F C udp PRIO IP PORT typ relay ..."),
// which the server logs as the relayed address of the allocation.
func candidateAddrs(byPeer map[string][]string) []string {
	var addrs []string
	for _, peer := range []string{"A", "B"} {
		for _, c := range byPeer[peer] {
			f := strings.Fields(c)
			if len(f) >= 6 {
				addrs = append(addrs, net.JoinHostPort(f[4], f[5]))
			}
		}
	}
	return addrs
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// driveBrowser serves web/ on 127.0.0.1, runs driver.mjs once for all cases and returns the results by case
// name, or a reason to skip every browser case when a tool is missing.
func driveBrowser(t *testing.T, tg *target, dir string, cases []browserCase) (map[string]browserResult, string) {
	t.Helper()
	node, err := exec.LookPath(toolNode.name)
	if err != nil {
		return nil, fmt.Sprintf("interop: node not found: %s", toolNode.hint)
	}
	chromium := os.Getenv("POSTERN_CHROMIUM")
	if chromium == "" {
		chromium = toolChromium.name
	}
	if _, err := exec.LookPath(chromium); err != nil {
		return nil, fmt.Sprintf("interop: %s not found: %s", chromium, toolChromium.hint)
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		return nil, "interop: playwright-core not installed: run `npm ci` in scripts/interop (scripts/test does)"
	}

	web := httptest.NewServer(http.FileServer(http.Dir("web")))
	defer web.Close()
	profile := filepath.Join(dir, "chromium-profile")
	cfg := driverConfig{
		URL:            web.URL + "/index.html",
		ExecutablePath: chromium,
		UserDataDir:    profile,
		// Chromium checks the TURN server's certificate for turns: like any TLS connection (measured: without
		// this the TLS cases fail with icecandidateerror 701 "Failed to establish connection"). Pinning the
		// suite's own key is the narrowest way to accept it; --ignore-certificate-errors also works but
		// accepts anything.
		ExtraFlags: []string{"--ignore-certificate-errors-spki-list=" + tg.cert.spki},
		Cases:      cases,
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("driver config: %v", err)
	}
	cfgPath := filepath.Join(dir, "driver.json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatalf("driver config: %v", err)
	}

	timeout := 60*time.Second + time.Duration(len(cases))*30*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "driver.mjs", cfgPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// SIGTERM first: playwright-core handles it by closing the browser it launched (Chromium runs in a process
	// group of its own, out of reach of a kill aimed at node's group).
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever is left of node's group
	killByArg(t, "--user-data-dir="+profile)            // and any Chromium process of this run's profile
	t.Logf("browser driver ran %d cases in %v", len(cases), time.Since(start).Round(time.Millisecond))

	results := make(map[string]browserResult)
	scanLines(stdout.String(), func(line string) {
		var r browserResult
		if json.Unmarshal([]byte(line), &r) == nil && r.Name != "" {
			results[r.Name] = r
		}
	})
	if err != nil || len(results) != len(cases) {
		t.Errorf("browser driver: %v (after %v, %d of %d results)\nstdout:\n%s\nstderr:\n%s",
			err, time.Since(start).Round(time.Millisecond), len(results), len(cases),
			indent(tailLines(stdout.String(), 20), "    "), indent(tailLines(stderr.String(), 40), "    "))
	}
	return results, ""
}

// killByArg kills processes whose command line contains arg: Chromium processes of this run's unique profile
// directory that outlived the driver (normally none). Bounded by the number of entries in /proc.
func killByArg(t *testing.T, arg string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(arg+"\x00")) { // arguments are NUL-terminated
			continue
		}
		t.Logf("killing leftover browser process %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
