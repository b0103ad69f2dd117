package traversal

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/probe"
	"github.com/postern/postern/relay"
)

// Addresses of the topology (see the package documentation).
const (
	clientAddr   = "10.99.1.2"
	fwClientSide = "10.99.1.1"
	fwServerSide = "10.99.2.1"
	serverAddr   = "10.99.2.2"
	serverNet    = "10.99.2.0/24"
	proxyPort    = "8888"
)

// interopDir holds the browser driver this test reuses, unchanged.
const interopDir = "../interop"

// world is the three namespaces and what runs in them.
type world struct {
	client, fw, server string // namespace names
	dir                string // scratch directory
	postern            string // the binary
	spki               string // base64 SHA-256 of the server certificate's key, for Chromium
	ice                iceServers
}

type iceServers struct {
	ICEServers []struct {
		URLs       []string `json:"urls"`
		Username   string   `json:"username"`
		Credential string   `json:"credential"`
	} `json:"iceServers"`
}

// requirements says what is missing to run here, or "".
func requirements() string {
	if runtime.GOOS != "linux" {
		return "traversal: needs Linux network namespaces"
	}
	if os.Geteuid() != 0 {
		return "traversal: needs root (network namespaces, nftables); run: sudo go test ./scripts/traversal/"
	}
	for _, tool := range []struct{ name, hint string }{
		{"ip", "apt-get install iproute2"},
		{"nft", "apt-get install nftables"},
		{"tinyproxy", "apt-get install tinyproxy"},
		{"node", "apt-get install nodejs (20 or later)"},
		{chromium(), "apt-get install chromium, or set POSTERN_CHROMIUM"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil {
			return fmt.Sprintf("traversal: %s not found: %s", tool.name, tool.hint)
		}
	}
	if _, err := os.Stat(filepath.Join(interopDir, "node_modules", "playwright-core", "package.json")); err != nil {
		return "traversal: playwright-core not installed: run `npm ci` in scripts/interop (scripts/test does)"
	}
	return ""
}

func chromium() string {
	if c := os.Getenv("POSTERN_CHROMIUM"); c != "" {
		return c
	}
	return "chromium"
}

// TestTraversal runs Postern behind three firewalls in turn; see the package
// documentation.
func TestTraversal(t *testing.T) {
	if testing.Short() {
		t.Skip("traversal: skipped with -short")
	}
	if why := requirements(); why != "" {
		if os.Getenv("POSTERN_INTEROP_REQUIRE") != "" {
			t.Fatal(why + " (CI requires it: scripts/test installs the tools as root)")
		}
		t.Skip(why)
	}
	w := setUp(t)
	cases := []struct {
		name  string
		rule  string // nftables rule for traffic from the client; "" forwards nothing
		proxy bool
		// The rows of postern probe that must relay ("transport port"); all others must not.
		relays []string
		// verdict is what the self-test page must conclude.
		verdict string
		// pageOnly skips the WebRTC call (which must go over TURN/TCP):
		// with UDP open, ICE rightly picks UDP.
		pageOnly bool
	}{
		{name: "open", rule: `iifname "vf0" accept`, pageOnly: true,
			relays:  []string{"udp 3478", "tcp 3478", "tls 5349", "udp 443", "tcp 443", "tls 443"},
			verdict: probe.WordCallsWork},
		{name: "no-udp", rule: `iifname "vf0" meta l4proto tcp accept`,
			relays:  []string{"tcp 3478", "tls 5349", "tcp 443", "tls 443"},
			verdict: probe.WordCallsWorkOnlyOver + "TCP 3478 or TLS 5349 or TCP 443 or TLS 443"},
		{name: "tcp-443-only", rule: `iifname "vf0" tcp dport 443 accept`,
			relays:  []string{"tcp 443", "tls 443"},
			verdict: probe.WordCallsWorkOnlyOver + "TCP 443 or TLS 443"},
		{name: "proxy-only", proxy: true,
			relays:  []string{"tcp 443", "tls 443"},
			verdict: probe.WordCallsWorkOnlyOver + "TCP 443 or TLS 443"},
	}
	// POSTERN_TRAVERSAL_CASE=NAME runs one network only (the suite takes
	// minutes), while developing.
	only := os.Getenv("POSTERN_TRAVERSAL_CASE")
	for _, tc := range cases {
		if only != "" && tc.name != only {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			w.firewall(t, tc.rule)
			proxy := ""
			if tc.proxy {
				proxy = "http://" + net.JoinHostPort(fwClientSide, proxyPort)
				// Without the proxy, nothing gets through at all.
				w.probe(t, "", nil)
			}
			probed := w.probe(t, proxy, tc.relays)
			w.selftestPage(t, tc.name, proxy, tc.verdict, probed)
			if tc.pageOnly {
				return
			}
			w.browser(t, tc.name, proxy)
			if tc.proxy {
				// The proxy carried it: CONNECT to Postern's port 443.
				log, _ := os.ReadFile(filepath.Join(w.dir, "tinyproxy.log"))
				if !bytes.Contains(log, []byte("CONNECT "+serverAddr+":443")) {
					t.Errorf("tinyproxy's log shows no CONNECT to %s:443:\n%s", serverAddr, tail(string(log), 20))
				}
			}
		})
	}
}

// setUp builds Postern, creates the namespaces, and starts Postern and
// tinyproxy; everything is undone when the test ends.
func setUp(t *testing.T) *world {
	t.Helper()
	id := strconv.Itoa(os.Getpid())
	w := &world{client: "pst-c-" + id, fw: "pst-f-" + id, server: "pst-s-" + id, dir: t.TempDir()}

	w.postern = filepath.Join(w.dir, "postern")
	run(t, "", "go", "build", "-o", w.postern, "../../cmd/postern")

	for _, ns := range []string{w.client, w.fw, w.server} {
		run(t, "", "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		run(t, ns, "ip", "link", "set", "lo", "up")
	}
	run(t, "", "ip", "link", "add", "vc0", "netns", w.client, "type", "veth", "peer", "name", "vf0", "netns", w.fw)
	run(t, "", "ip", "link", "add", "vf1", "netns", w.fw, "type", "veth", "peer", "name", "vs0", "netns", w.server)
	for _, c := range [][]string{
		{w.client, "ip", "addr", "add", clientAddr + "/24", "dev", "vc0"},
		{w.client, "ip", "link", "set", "vc0", "up"},
		{w.client, "ip", "route", "add", "default", "via", fwClientSide},
		{w.fw, "ip", "addr", "add", fwClientSide + "/24", "dev", "vf0"},
		{w.fw, "ip", "addr", "add", fwServerSide + "/24", "dev", "vf1"},
		{w.fw, "ip", "link", "set", "vf0", "up"},
		{w.fw, "ip", "link", "set", "vf1", "up"},
		{w.fw, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{w.server, "ip", "addr", "add", serverAddr + "/24", "dev", "vs0"},
		{w.server, "ip", "link", "set", "vs0", "up"},
		{w.server, "ip", "route", "add", "default", "via", fwServerSide},
	} {
		run(t, c[0], c[1:]...)
	}

	certFile, keyFile := w.writeCert(t)
	w.startPostern(t, certFile, keyFile)
	w.startTinyproxy(t)
	return w
}

// writeCert writes a self-signed certificate for Postern and remembers its
// key's hash, which Chromium is told to accept.
func (w *world) writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	cert, err := relay.SelfSignedCertificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	w.spki = base64.StdEncoding.EncodeToString(sum[:])
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(w.dir, "cert.pem"), filepath.Join(w.dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", cert.Certificate[0])
	writePEM(t, keyFile, "PRIVATE KEY", key)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startPostern runs `postern serve` with its default listeners in the
// server namespace and reads the iceServers JSON it prints.
func (w *world) startPostern(t *testing.T, certFile, keyFile string) {
	t.Helper()
	cmd, stdout, logs := start(t, w.server, w.postern, "serve",
		"--tls-cert", certFile, "--tls-key", keyFile, "--allow-peer", serverNet, "--log-level", "debug",
		// The self-test page on tcp+tls 443 (selftest.go); a burst that
		// outlasts a rerun of every case from one client address.
		"--selftest", "--selftest-burst", "20")
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		if !ok {
			t.Fatalf("postern printed no iceServers (exited: %v)\n%s", cmd.ProcessState, logs)
		}
		if err := json.Unmarshal([]byte(l), &w.ice); err != nil || len(w.ice.ICEServers) != 1 {
			t.Fatalf("postern's iceServers %q: %v", l, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("postern printed no iceServers within 15 s\n%s", logs)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postern's log (tail):\n%s", tail(logs.String(), 40))
		}
	})
	urls := w.ice.ICEServers[0].URLs
	t.Logf("postern's ICE URLs: %s", strings.Join(urls, " "))
	for _, u := range urls {
		if !strings.Contains(u, serverAddr) {
			t.Fatalf("URL %s does not name the server's address %s", u, serverAddr)
		}
	}
	if len(urls) < 7 {
		t.Fatalf("%d URLs, want those of all five default listeners", len(urls))
	}
}

// startTinyproxy runs the firewall's HTTP proxy: CONNECT to port 443 only,
// for the client's subnet only.
func (w *world) startTinyproxy(t *testing.T) {
	t.Helper()
	conf := filepath.Join(w.dir, "tinyproxy.conf")
	content := fmt.Sprintf("Port %s\nListen %s\nTimeout 60\nAllow 10.99.1.0/24\nConnectPort 443\nMaxClients 50\n"+
		"LogLevel Connect\nLogFile %q\nPidFile %q\n", proxyPort, fwClientSide,
		filepath.Join(w.dir, "tinyproxy.log"), filepath.Join(w.dir, "tinyproxy.pid"))
	if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, w.fw, "tinyproxy", "-d", "-c", conf)
	// Wait until it accepts, from the client's side.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := exec.Command("ip", "netns", "exec", w.client, "bash", "-c",
			"exec 3<>/dev/tcp/"+fwClientSide+"/"+proxyPort).Run()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(w.dir, "tinyproxy.log"))
			t.Fatalf("tinyproxy does not accept on %s:%s: %v\n%s", fwClientSide, proxyPort, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// firewall replaces the firewall's forwarding rules: established traffic
// and rule pass, everything else is dropped.
func (w *world) firewall(t *testing.T, rule string) {
	t.Helper()
	ruleset := `flush ruleset
table inet traversal {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		` + rule + `
	}
}
`
	path := filepath.Join(w.dir, "fw.nft")
	if err := os.WriteFile(path, []byte(ruleset), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, w.fw, "nft", "-f", path)
}

// probeResult is the part of `postern probe --json` checked here.
type probeResult struct {
	Results []struct {
		Transport string `json:"transport"`
		Port      int    `json:"port"`
		Reachable bool   `json:"reachable"`
		Relay     string `json:"relay"`
		Error     string `json:"error"`
	} `json:"results"`
}

// probe runs `postern probe --json` in the client namespace and checks that
// exactly the rows in relays relay, and the exit status. It returns the
// rows.
func (w *world) probe(t *testing.T, proxy string, relays []string) probeResult {
	t.Helper()
	ice := w.ice.ICEServers[0]
	args := []string{"probe", serverAddr, "--user", ice.Username, "--password", ice.Credential, "--json", "--timeout", "3s"}
	if proxy != "" {
		args = append(args, "--proxy", proxy)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", w.client, w.postern}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res probeResult
	if jerr := json.Unmarshal(stdout.Bytes(), &res); jerr != nil {
		t.Fatalf("probe: %v, %v\n%s%s", err, jerr, stdout.String(), stderr.String())
	}
	got := map[string]bool{}
	for _, r := range res.Results {
		key := r.Transport + " " + strconv.Itoa(r.Port)
		got[key] = r.Relay == "yes"
		want := false
		for _, k := range relays {
			want = want || k == key
		}
		if got[key] != want {
			t.Errorf("probe (proxy %q): %s relays %v, want %v (error %q)", proxy, key, got[key], want, r.Error)
		}
	}
	if len(res.Results) == 0 {
		t.Errorf("probe (proxy %q) printed no rows", proxy)
	}
	for _, k := range relays {
		if _, ok := got[k]; !ok {
			t.Errorf("probe (proxy %q) has no row for %s, which must relay", proxy, k)
		}
	}
	var exit *exec.ExitError
	switch {
	case len(relays) > 0 && err != nil:
		t.Errorf("probe exited with %v although %v relay\n%s", err, relays, stderr.String())
	case len(relays) == 0 && !errors.As(err, &exit):
		t.Errorf("probe exited with %v, want status 1: nothing relays", err)
	}
	return res
}

// driverCase and driverConfig are the JSON scripts/interop/driver.mjs reads.
type driverCase struct {
	Name              string            `json:"name"`
	ICEServers        []json.RawMessage `json:"iceServers"`
	WantRelayProtocol string            `json:"wantRelayProtocol"`
	Messages          int               `json:"messages"`
	TimeoutMs         int               `json:"timeoutMs"`
	// RetryTimeout runs a case that connected but timed out once more:
	// Chromium's answerer now and then never sends its data although the
	// relay carries all it does send (scripts/interop/doc.go).
	RetryTimeout bool `json:"retryTimeout"`
}

type driverConfig struct {
	URL            string       `json:"url"`
	ExecutablePath string       `json:"executablePath"`
	UserDataDir    string       `json:"userDataDir"`
	ExtraFlags     []string     `json:"extraFlags"`
	Cases          []driverCase `json:"cases"`
}

// messages is how many messages each peer connection sends.
const messages = 20

// overTCPOrTLS accepts a driver result that failed only because a peer
// connection's selected relay runs over TLS rather than TCP: with both
// open, which one ICE nominates is a race, and either is a TCP traversal.
// web/relay.js checks the relay protocol last, after the data exchange
// and the relay-to-relay pair, so such a reason means those passed.
func overTCPOrTLS(reason string, sent, received, messages int) bool {
	return sent == 2*messages && received == 2*messages &&
		(strings.HasSuffix(reason, "local relay candidate uses relayProtocol tls, want tcp"))
}

// browser runs headless Chromium in the client namespace with Postern's
// ICE servers, relay only, and checks that its two peer connections
// exchange data through the relay over TURN/TCP.
func (w *world) browser(t *testing.T, name, proxy string) {
	t.Helper()
	web := w.serveWebInClient(t)
	profile := filepath.Join(w.dir, "chromium-"+name)
	flags := w.chromiumFlags(proxy)
	ice, err := json.Marshal(w.ice.ICEServers[0])
	if err != nil {
		t.Fatal(err)
	}
	exe, err := exec.LookPath(chromium())
	if err != nil {
		t.Fatal(err)
	}
	cfg := driverConfig{
		URL: web + "/index.html", ExecutablePath: exe, UserDataDir: profile, ExtraFlags: flags,
		Cases: []driverCase{{Name: name, ICEServers: []json.RawMessage{ice}, WantRelayProtocol: "tcp", Messages: messages, TimeoutMs: 30000, RetryTimeout: true}},
	}
	stdout, stderr, took, err := w.runDriver(t, "driver.mjs", "driver-"+name, cfg, profile, 90*time.Second)

	var res struct {
		Name          string `json:"name"`
		OK            bool   `json:"ok"`
		Reason        string `json:"reason"`
		Pair          string `json:"pair"`
		RelayProtocol string `json:"relayProtocol"`
		MS            int    `json:"ms"`
		Sent          int    `json:"sent"`
		Received      int    `json:"received"`
		RetriedAfter  string `json:"retriedAfter"`
	}
	line := strings.TrimSpace(stdout)
	if err != nil || json.Unmarshal([]byte(line), &res) != nil {
		t.Fatalf("browser driver: %v after %v\nstdout:\n%s\nstderr:\n%s", err, took.Round(time.Millisecond),
			tail(stdout, 20), tail(stderr, 40))
	}
	if res.RetriedAfter != "" {
		t.Logf("first attempt timed out and the case ran again (Chromium answerer stall, scripts/interop/doc.go): %s", res.RetriedAfter)
	}
	if !res.OK && !overTCPOrTLS(res.Reason, res.Sent, res.Received, messages) {
		t.Fatalf("Chromium could not connect through the relay: %s\n%s", res.Reason, line)
	}
	if !res.OK {
		t.Logf("Chromium connected in %d ms; one peer connection relays over TLS (%s)", res.MS, res.Reason)
		return
	}
	t.Logf("Chromium connected in %d ms over TURN/%s: %s", res.MS, res.RelayProtocol, res.Pair)
}

// chromiumFlags are the flags the tests add to the interop driver's
// (scripts/interop/driver.mjs: FLAGS) for Chromium in the client namespace.
func (w *world) chromiumFlags(proxy string) []string {
	flags := []string{
		"--ignore-certificate-errors-spki-list=" + w.spki,
		// The driver maps every host but loopback to nothing, and Chromium
		// applies that to IP literals too (TURN over TCP to 10.99.2.2 then
		// fails with 701): exclude the server and the proxy. The last
		// --host-resolver-rules wins.
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost, EXCLUDE " + serverAddr + ", EXCLUDE " + fwClientSide,
	}
	if proxy != "" {
		flags = append(flags, "--proxy-server="+proxy)
	}
	return flags
}

// serveWebInClient serves the interop suite's page on 127.0.0.1 inside the
// client namespace and returns its base URL.
func (w *world) serveWebInClient(t *testing.T) string {
	t.Helper()
	ln, err := listenInNamespace(w.client)
	if err != nil {
		t.Fatalf("listening in %s: %v", w.client, err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(filepath.Join(interopDir, "web"))), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	t.Cleanup(func() { _ = srv.Close(); wg.Wait() })
	return "http://" + ln.Addr().String()
}

// listenInNamespace opens a loopback TCP listener inside namespace ns. A
// socket stays in the namespace it was made in, so only the thread making
// it switches, and switches back. Should switching back fail, the thread
// stays locked and Go discards it. (Discarding threads is avoided
// otherwise: a child started with Pdeathsig from that thread would be
// killed with it.)
func listenInNamespace(ns string) (net.Listener, error) {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns: %w", err)
	}
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it is in the wrong namespace.
		if ln != nil {
			_ = ln.Close()
		}
		return nil, fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ln, lerr
}

// run runs a command (in namespace ns when not empty) and fails the test
// if it fails.
func run(t *testing.T, ns string, args ...string) {
	t.Helper()
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// start runs a long-lived command in namespace ns in a process group of its
// own, killed when the test ends. It returns the command, its stdout and
// its collected stderr.
func start(t *testing.T, ns string, args ...string) (*exec.Cmd, io.Reader, *turntest.SyncBuffer) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logs := &turntest.SyncBuffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return cmd, stdout, logs
}

// killByProfile kills leftover Chromium processes of this test's profile
// directory (a path unique to this run; normally there are none).
func killByProfile(profile string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	needle := []byte("--user-data-dir=" + profile + "\x00")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, needle) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// tail returns the last n lines of s.
// runDriver runs the interop suite's Node.js script (driver.mjs,
// selftest.mjs) in the client namespace with cfg written as JSON to
// w.dir/NAME.json, for at most timeout, and kills what it leaves: its
// process group and the Chromium of profile.
func (w *world) runDriver(t *testing.T, script, name string, cfg any, profile string, timeout time.Duration) (stdout, stderr string, took time.Duration, err error) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(w.dir, name+".json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	driver, err := filepath.Abs(filepath.Join(interopDir, script))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", w.client, "node", driver, cfgPath)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// SIGTERM first: playwright-core then closes the browser it launched.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	killByProfile(profile)
	return out.String(), errOut.String(), time.Since(start), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
