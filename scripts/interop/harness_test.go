package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// modulePath is the module whose root the suite looks for, walking up from the test's working directory.
const modulePath = "github.com/postern/postern"

// moduleRoot returns the directory holding Postern's go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for range 64 { // bounded walk: no real tree is this deep
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modFileDeclares(b, modulePath) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	t.Fatalf("no go.mod declaring module %s above the working directory", modulePath)
	return ""
}

func modFileDeclares(gomod []byte, module string) bool {
	for line := range strings.SplitSeq(string(gomod), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "module" && strings.Trim(f[1], `"`) == module {
			return true
		}
	}
	return false
}

// tool describes an external program the suite needs and how to get it; lookTool skips the calling test with
// that hint when the program is missing, so `go test ./...` passes on a machine with only Go.
type tool struct {
	name string // executable name or absolute path
	hint string // how to install it
}

var (
	toolCoturn   = tool{"turnutils_uclient", "apt-get install coturn (Debian), or run scripts/test as root"}
	toolStun     = tool{"turnutils_stunclient", "apt-get install coturn (Debian), or run scripts/test as root"}
	toolPeer     = tool{"turnutils_peer", "apt-get install coturn (Debian), or run scripts/test as root"}
	toolServer   = tool{"turnserver", "apt-get install coturn (Debian)"}
	toolNode     = tool{"node", "apt-get install nodejs (Node.js 20 or newer)"}
	toolChromium = tool{"/usr/bin/chromium", "apt-get install chromium (Debian), or set POSTERN_CHROMIUM"}
)

// lookTool returns the program's path or skips t naming the missing tool and how to get it.
func lookTool(t testing.TB, tl tool) string {
	t.Helper()
	p, skip := findTool(tl)
	if skip != "" {
		skipOrFail(t, skip)
	}
	return p
}

// skipOrFail skips t with msg, or fails it when POSTERN_INTEROP_REQUIRE is set: scripts/test sets it in CI, where
// a missing tool means a broken install, not a reason to pass.
func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("POSTERN_INTEROP_REQUIRE") != "" {
		t.Fatal(msg + " (POSTERN_INTEROP_REQUIRE is set, so this fails instead of skipping)")
	}
	t.Skip(msg)
}

// findTool returns the program's path, or a skip message naming the missing tool and how to get it.
func findTool(tl tool) (path, skip string) {
	p, err := exec.LookPath(tl.name)
	if err != nil {
		return "", fmt.Sprintf("interop: %s not found (%v): %s", tl.name, err, tl.hint)
	}
	return p, ""
}

// relayRange picks a block of n UDP ports for relayed addresses, below Linux's default ephemeral range
// (32768-60999) so that clients' own ephemeral ports rarely land in it.
func relayRange(n int) (low, high int) {
	base, _ := rand.Int(rand.Reader, big.NewInt(int64(30000-20000-n)))
	low = 20000 + int(base.Int64())
	return low, low + n - 1
}

// certFiles is a self-signed certificate for 127.0.0.1, ::1 and localhost, written as PEM files.
type certFiles struct {
	certPath, keyPath string
	pool              *x509.CertPool // trusts the certificate
	spki              string         // base64(SHA-256(SubjectPublicKeyInfo)), Chromium's pin format
}

func newCert(t testing.TB, dir string) certFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("cert: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("cert: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"Postern interop"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("cert: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("cert: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("cert: %v", err)
	}
	c := certFiles{
		certPath: filepath.Join(dir, "cert.pem"),
		keyPath:  filepath.Join(dir, "key.pem"),
		pool:     x509.NewCertPool(),
	}
	writePEM(t, c.certPath, "CERTIFICATE", der)
	writePEM(t, c.keyPath, "PRIVATE KEY", keyDER)
	c.pool.AddCert(cert)
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	c.spki = base64.StdEncoding.EncodeToString(sum[:])
	return c
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func (c certFiles) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: c.pool, NextProtos: []string{"stun.turn"}, MinVersion: tls.VersionTLS12}
}

// proc is a started background process (a server, the peer, the browser driver) in its own process group.
// stop kills the whole group, so helpers it forked die with it; it is registered with t.Cleanup.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status, valid after done
}

// startProc starts cmd with stdout and stderr appended to a log file in dir (never the test's own stdout: an
// orphaned child holding that pipe would keep `go test` waiting).
func startProc(t testing.TB, dir, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Setpgid: the child leads a new process group so stop can kill it and everything it forked.
	// Pdeathsig: if the test binary dies without running cleanups (a panic, go test's -timeout), the kernel
	// kills the child rather than leaving a server bound to the port. (It fires when the forking OS thread exits;
	// Go only retires threads of goroutines that exit while locked to them, which the test never does.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

// stop asks the group to terminate, then kills it after a grace period; it waits for the process to exit.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
	}
	// The group may outlive its leader (a forked helper), so kill the group even after the leader exited.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// exited reports whether the process has exited, with its status.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string { return tailFile(p.logPath, n) }

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tailLines(string(b), n)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// indent prefixes every line of s, for log excerpts inside test output.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}

// run executes a short-lived client with a timeout, in its own process group that is killed on timeout (the
// coturn clients retry forever against a silent server). It returns combined output and the exit error.
func run(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("%s timed out after %v: %w", filepath.Base(name), timeout, ctx.Err())
	}
	return out.String(), err
}

// report collects one line per case and prints the closing "N passed, N failed" line. Lines go to stdout (seen
// with -v or when the package fails) and, when POSTERN_INTEROP_REPORT names a file, are appended there too so
// scripts/test can show them after a quiet `go test ./...`.
type report struct {
	mu                      sync.Mutex
	file                    string
	passed, failed, skipped int
}

// printf writes one line; the caller holds r.mu, so lines of parallel cases never interleave.
func (r *report) printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	fmt.Println(line)
	if r.file == "" {
		return
	}
	f, err := os.OpenFile(r.file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "interop: report file: %v\n", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// caseInfo is what a case fills in for its report line.
type caseInfo struct {
	transport string // udp, tcp, tls
	port      int
	pair      string        // selected candidate pair (browser), relayed -> peer (uclient), mapped address (STUN)
	note      string        // why it was skipped or failed, short
	took      time.Duration // the case's own measure of its time, when the subtest only reports a result
}

// record writes the case's line once it has finished (passed, failed or skipped).
func (r *report) record(t *testing.T, info *caseInfo, took time.Duration) {
	r.mu.Lock()
	status := "PASS"
	switch {
	case t.Skipped():
		status = "SKIP"
		r.skipped++
	case t.Failed():
		status = "FAIL"
		r.failed++
	default:
		r.passed++
	}
	defer r.mu.Unlock()
	if info.took > 0 {
		took = info.took
	}
	pair := info.pair
	if pair == "" {
		pair = "-"
	}
	line := fmt.Sprintf("%s %-42s transport=%-3s port=%-5d pair=%q time=%.2fs",
		status, t.Name(), info.transport, info.port, pair, took.Seconds())
	switch {
	case info.note != "" && status != "PASS":
		line += " reason=" + strconv.Quote(info.note)
	case info.note != "":
		line += " note=" + strconv.Quote(info.note)
	}
	r.printf("%s", line)
}

func (r *report) summary() {
	r.mu.Lock()
	line := fmt.Sprintf("%d passed, %d failed", r.passed, r.failed)
	if r.skipped > 0 {
		line += fmt.Sprintf(", %d skipped", r.skipped)
	}
	r.printf("%s", line)
	r.mu.Unlock()
}

// runCase runs fn as subtest name and records its line whatever the outcome (t.Fatal and t.Skip included).
func (r *report) runCase(t *testing.T, name string, parallel bool, fn func(t *testing.T, info *caseInfo)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		if parallel {
			t.Parallel()
		}
		info := &caseInfo{}
		start := time.Now()
		defer func() { r.record(t, info, time.Since(start)) }()
		fn(t, info)
	})
}

// fail records a short reason for the report line and fails the test with the full detail.
func (info *caseInfo) fail(t *testing.T, short string, detail string, args ...any) {
	t.Helper()
	info.note = short
	t.Errorf("%s: "+detail, append([]any{short}, args...)...)
}

// scanLines calls fn for each line of s.
func scanLines(s string, fn func(line string)) {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fn(sc.Text())
	}
}

// errExited is returned while waiting for a server that has already exited.
var errExited = errors.New("process exited")
