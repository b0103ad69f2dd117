package interop

import (
	"context"
	"crypto/tls"
	"encoding/binary"
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
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/internal/turntest"
)

// Credentials every target is configured with.
const (
	realm      = "postern.test"
	ltUser     = "alice"
	ltPassword = "interop-Passw0rd"
	restUser   = "bob"
	restSecret = "interop-rest-secret"
)

// stunHeaderSize is the fixed STUN header (RFC 8489 §5): type, length, magic cookie, transaction ID.
const stunHeaderSize = 20

// Target names accepted in POSTERN_INTEROP_TARGET.
const (
	targetPostern = "postern"
	targetCoturn  = "coturn"
)

// ports are one server's listening ports on 127.0.0.1.
type ports struct {
	plain  int // UDP and TCP on one number: the RFC 8656 3478 role
	tls    int // TURN over TLS: the 5349 role
	shared int // UDP, plus TCP and TLS sniffed on one TCP port: the 443 role (Postern's tcp+tls listener)
}

// server is one running TURN server process.
type server struct {
	name  string
	ports ports
	proc  *proc
	admin string // Postern's admin listener (HOST:PORT), for the drop counters of a failing case; "" for coturn
}

// drops returns the server's nonzero packet-drop and request-error counters from its admin /metrics, or "" if it
// has no admin listener: why a relay lost what a client missed.
func (s *server) drops() string {
	if s.admin == "" {
		return ""
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + s.admin + "/metrics")
	if err != nil {
		return fmt.Sprintf("(metrics: %v)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Sprintf("(metrics: %v)", err)
	}
	var lines []string
	scanLines(string(body), func(line string) {
		if (strings.HasPrefix(line, "postern_dropped_packets_total") || strings.HasPrefix(line, "postern_request_errors_total")) &&
			!strings.HasSuffix(line, " 0") {
			lines = append(lines, line)
		}
	})
	if len(lines) == 0 {
		return "none"
	}
	return strings.Join(lines, "\n")
}

// target is the TURN implementation under test: one server doing both kinds of credentials (Postern), or one
// per kind (coturn cannot do long-term users and the REST secret at once).
type target struct {
	name    string
	bin     string // the postern binary under test; empty for coturn
	cert    certFiles
	lt      *server // serves ltUser/ltPassword
	rest    *server // serves REST credentials minted from restSecret
	servers []*server
}

func (tg *target) server(rest bool) *server {
	if rest {
		return tg.rest
	}
	return tg.lt
}

// logTail returns the last n lines of each server's log, for a failing case's report.
func (tg *target) logTail(n int) string {
	var b strings.Builder
	for _, s := range tg.servers {
		fmt.Fprintf(&b, "--- %s log (%s), last %d lines:\n%s\n", s.name, s.proc.logPath, n, indent(s.proc.tail(n), "    "))
	}
	return b.String()
}

// logExcerpt returns, for each server, the log lines that mention any of needles (a case's client and relayed
// addresses: the lines about this case among those of cases running in parallel), at most n, then the last
// few lines of the log.
func (tg *target) logExcerpt(needles []string, n int) string {
	if len(needles) == 0 {
		return tg.logTail(n)
	}
	var b strings.Builder
	for _, s := range tg.servers {
		raw, err := os.ReadFile(s.proc.logPath)
		if err != nil {
			fmt.Fprintf(&b, "--- %s log: %v\n", s.name, err)
			continue
		}
		var hits []string
		scanLines(string(raw), func(line string) {
			for _, nd := range needles {
				if strings.Contains(line, nd) {
					hits = append(hits, line)
					return
				}
			}
		})
		fmt.Fprintf(&b, "--- %s log (%s), lines mentioning %s:\n%s\n", s.name, s.proc.logPath,
			strings.Join(needles, " "), indent(tailLines(strings.Join(hits, "\n"), n), "    "))
		fmt.Fprintf(&b, "--- %s log, last 10 lines:\n%s\n", s.name, indent(tailLines(string(raw), 10), "    "))
		if d := s.drops(); d != "" {
			fmt.Fprintf(&b, "--- %s drop and request-error counters (whole run):\n%s\n", s.name, indent(d, "    "))
		}
	}
	return b.String()
}

// startTarget builds and starts the implementation named by POSTERN_INTEROP_TARGET (default postern) and waits
// until every listener answers.
func startTarget(t *testing.T, dir string) *target {
	t.Helper()
	name := os.Getenv("POSTERN_INTEROP_TARGET")
	if name == "" {
		name = targetPostern
	}
	tg := &target{name: name, cert: newCert(t, dir)}
	switch name {
	case targetPostern:
		tg.bin = buildPostern(t, dir)
		for attempt := 1; ; attempt++ {
			s := startPostern(t, dir, tg.bin, tg.cert)
			tg.lt, tg.rest, tg.servers = s, s, []*server{s}
			err := waitReady(s, tg.cert, 15*time.Second)
			// The ports were free when picked, but any process on the machine may take one (as the local port
			// of an outgoing connection) before postern binds it: pick new ones rather than fail the run.
			if err != nil && attempt < 3 && errors.Is(err, errExited) && strings.Contains(s.proc.tail(5), "address already in use") {
				t.Logf("postern could not bind a port picked for it (attempt %d), trying other ports: %s", attempt, s.proc.tail(1))
				continue
			}
			break
		}
	case targetCoturn:
		bin := lookTool(t, toolServer)
		tg.lt = startCoturn(t, dir, bin, tg.cert, false)
		tg.rest = startCoturn(t, dir, bin, tg.cert, true)
		tg.servers = []*server{tg.lt, tg.rest}
	default:
		t.Fatalf("POSTERN_INTEROP_TARGET=%q: want %q or %q", name, targetPostern, targetCoturn)
	}
	for _, s := range tg.servers {
		if err := waitReady(s, tg.cert, 15*time.Second); err != nil {
			t.Fatalf("%s did not come up: %v\n%s", s.name, err, tg.logTail(40))
		}
	}
	return tg
}

// buildPostern builds ./cmd/postern once for this run, or returns POSTERN_INTEROP_BIN when that names a binary
// already built (to bisect, or to test a release build).
func buildPostern(t *testing.T, dir string) string {
	t.Helper()
	if bin := os.Getenv("POSTERN_INTEROP_BIN"); bin != "" {
		return bin
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "postern")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/postern")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/postern (in %s): %v\n%s", cmd.Dir, err, out)
	}
	return bin
}

func startPostern(t *testing.T, dir, bin string, cert certFiles) *server {
	t.Helper()
	s := &server{name: "postern", ports: ports{plain: turntest.FreePort(t), tls: turntest.FreePort(t), shared: turntest.FreePort(t)},
		admin: "127.0.0.1:" + strconv.Itoa(turntest.FreePort(t))}
	low, high := relayRange(200)
	lo := "127.0.0.1:"
	args := []string{"serve",
		"--listen", "udp://" + lo + strconv.Itoa(s.ports.plain),
		"--listen", "tcp://" + lo + strconv.Itoa(s.ports.plain),
		"--listen", "tls://" + lo + strconv.Itoa(s.ports.tls),
		"--listen", "udp://" + lo + strconv.Itoa(s.ports.shared),
		"--listen", "tcp+tls://" + lo + strconv.Itoa(s.ports.shared),
		"--realm", realm,
		"--user", ltUser + ":" + ltPassword,
		"--secret", restSecret,
		"--relay-ip", "127.0.0.1",
		"--relay-ports", fmt.Sprintf("%d-%d", low, high),
		// Loopback peers are denied by default (DESIGN.md peer policy); the suite's peers are all on loopback.
		"--allow-peer", "127.0.0.0/8",
		"--tls-cert", cert.certPath,
		"--tls-key", cert.keyPath,
		"--log-level", "debug",
		"--admin", s.admin,
	}
	s.proc = startProc(t, dir, "postern", exec.Command(bin, args...))
	return s
}

func startCoturn(t *testing.T, dir, bin string, cert certFiles, rest bool) *server {
	t.Helper()
	name := "coturn-lt"
	if rest {
		name = "coturn-rest"
	}
	plain, tlsPort := turntest.FreePort(t), turntest.FreePort(t)
	// coturn serves UDP, TCP and TLS on its listening port (TLS is sniffed), but with --no-dtls nothing on UDP
	// of its TLS port: so its plain port plays the shared (443) role.
	s := &server{name: name, ports: ports{plain: plain, tls: tlsPort, shared: plain}}
	low, high := relayRange(200)
	args := []string{
		"-n", // no configuration file (/etc/turnserver.conf)
		"--listening-ip=127.0.0.1",
		"--relay-ip=127.0.0.1",
		"--listening-port=" + strconv.Itoa(plain),
		"--tls-listening-port=" + strconv.Itoa(tlsPort),
		"--no-dtls", "--no-rfc5780", "--no-cli", "--no-multicast-peers",
		"--realm=" + realm,
		"--allow-loopback-peers",
		"--cert=" + cert.certPath, "--pkey=" + cert.keyPath,
		fmt.Sprintf("--min-port=%d", low), fmt.Sprintf("--max-port=%d", high),
		"--log-file=stdout", "--simple-log",
		"--pidfile=" + filepath.Join(dir, name+".pid"),
	}
	if rest {
		args = append(args, "--use-auth-secret", "--static-auth-secret="+restSecret)
	} else {
		args = append(args, "--lt-cred-mech", "--user="+ltUser+":"+ltPassword)
	}
	s.proc = startProc(t, dir, name, exec.Command(bin, args...))
	return s
}

// waitReady polls the server's listeners until each answers a STUN Binding request (UDP, TCP, TLS), the server
// exits, or the timeout passes.
func waitReady(s *server, cert certFiles, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	checks := []struct {
		network string
		port    int
	}{
		{"udp", s.ports.plain}, {"tcp", s.ports.plain}, {"tls", s.ports.tls},
		{"udp", s.ports.shared}, {"tcp", s.ports.shared}, {"tls", s.ports.shared},
	}
	for _, c := range checks {
		for {
			if done, err := s.proc.exited(); done {
				return fmt.Errorf("%w: %v", errExited, err)
			}
			_, err := stunBinding(c.network, net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)), cert, 300*time.Millisecond)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s port %d: %w", c.network, c.port, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// stunBinding sends one Binding request over network ("udp", "tcp" or "tls") and returns XOR-MAPPED-ADDRESS,
// after checking it is the client's own address (the server must reflect what it sees: RFC 8489 §15.2).
func stunBinding(network, addr string, cert certFiles, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var c net.Conn
	var err error
	d := &net.Dialer{Deadline: deadline}
	switch network {
	case "udp", "tcp":
		c, err = d.Dial(network, addr)
	case "tls":
		c, err = tls.DialWithDialer(d, "tcp", addr, cert.clientTLS())
	default:
		return "", fmt.Errorf("stun binding: unknown network %q", network)
	}
	if err != nil {
		return "", fmt.Errorf("stun binding: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return "", fmt.Errorf("stun binding: %w", err)
	}
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return "", fmt.Errorf("stun binding: build: %w", err)
	}
	if _, err := c.Write(req.Raw); err != nil {
		return "", fmt.Errorf("stun binding: write: %w", err)
	}
	raw := make([]byte, 1500)
	n := 0
	if network == "udp" {
		n, err = c.Read(raw)
	} else {
		// A stream carries whole STUN messages back to back (RFC 8656 §12.5): header first, then its length.
		if _, err = io.ReadFull(c, raw[:stunHeaderSize]); err == nil {
			n = stunHeaderSize + int(binary.BigEndian.Uint16(raw[2:4]))
			if n > len(raw) {
				return "", fmt.Errorf("stun binding: %d-byte response is larger than a Binding response can be", n)
			}
			_, err = io.ReadFull(c, raw[stunHeaderSize:n])
		}
	}
	if err != nil {
		return "", fmt.Errorf("stun binding: read: %w", err)
	}
	res := &stun.Message{Raw: raw[:n]}
	if err := res.Decode(); err != nil {
		return "", fmt.Errorf("stun binding: decode: %w", err)
	}
	if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		return "", fmt.Errorf("stun binding: got %v (transaction match %v), want binding success", res.Type, res.TransactionID == req.TransactionID)
	}
	var xma stun.XORMappedAddress
	if err := xma.GetFrom(res); err != nil {
		return "", fmt.Errorf("stun binding: XOR-MAPPED-ADDRESS: %w", err)
	}
	if xma.String() != c.LocalAddr().String() {
		return xma.String(), fmt.Errorf("stun binding: XOR-MAPPED-ADDRESS %s, but the client is %s", xma, c.LocalAddr())
	}
	return xma.String(), nil
}
