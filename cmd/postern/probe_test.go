package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

const (
	probeTestUser     = "alice"
	probeTestPassword = "wonderland"
	probeTestSecret   = "probe-secret"
)

// startProbeServer runs a relay on loopback with the given listeners.
func startProbeServer(t *testing.T, listeners ...relay.ListenSpec) {
	t.Helper()
	a, err := auth.New(auth.Config{Realm: "probe.test", Users: map[string]string{probeTestUser: probeTestPassword}, Secrets: []string{probeTestSecret}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := relay.New(relay.Config{
		Listeners: listeners, ListenersExplicit: true,
		Auth:    a,
		Policy:  auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP: netip.MustParseAddr("127.0.0.1"),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	turntest.Start(t, srv)
}

// probeRows parses the table rows of probe's output by transport and port.
func probeRows(t *testing.T, out string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && (f[0] == "udp" || f[0] == "tcp" || f[0] == "tls") {
			rows[f[0]+" "+f[1]] = f
		}
	}
	if len(rows) != 6 {
		t.Fatalf("want 6 rows, got %d in:\n%s", len(rows), out)
	}
	return rows
}

// TestProbe runs `postern probe` against a server with UDP and TCP on one
// port and TCP+TLS on another, while the TLS port and UDP on the second
// port are down.
func TestProbe(t *testing.T) {
	turnPort := turntest.FreePort(t)
	altPort := turntest.FreePort(t)
	downPort := turntest.FreePort(t)
	startProbeServer(t,
		relay.ListenSpec{Kind: relay.UDP, Addr: "127.0.0.1:" + strconv.Itoa(turnPort)},
		relay.ListenSpec{Kind: relay.TCP, Addr: "127.0.0.1:" + strconv.Itoa(turnPort)},
		relay.ListenSpec{Kind: relay.TCPTLS, Addr: "127.0.0.1:" + strconv.Itoa(altPort)},
	)
	ports := []string{"--turn-port", strconv.Itoa(turnPort), "--turns-port", strconv.Itoa(downPort),
		"--alt-port", strconv.Itoa(altPort), "--timeout", "1s"}
	tp, dp, ap := strconv.Itoa(turnPort), strconv.Itoa(downPort), strconv.Itoa(altPort)

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, "", append([]string{"probe", "127.0.0.1", "--user", probeTestUser, "--password", probeTestPassword}, ports...)...)
		if err != nil {
			t.Fatalf("probe: %v\n%s", err, out)
		}
		rows := probeRows(t, out)
		want := map[string][2]string{ // reachable, relay
			"udp " + tp: {"yes", "yes"},
			"tcp " + tp: {"yes", "yes"},
			"tls " + dp: {"no", "-"},
			"udp " + ap: {"no", "-"},
			"tcp " + ap: {"yes", "yes"},
			"tls " + ap: {"yes", "yes"},
		}
		for key, w := range want {
			f := rows[key]
			got := [2]string{f[2], f[4]}
			if f[2] == "yes" {
				got[1] = f[5] // the RTT takes two fields: "0.3 ms"
			}
			if got != w {
				t.Errorf("row %s: reachable/relay %v, want %v (%q)", key, got, w, strings.Join(f, " "))
			}
		}
		if !strings.Contains(strings.Join(rows["tls "+ap], " "), "certificate refused") {
			t.Errorf("the self-signed certificate is not reported:\n%s", out)
		}
		if !strings.Contains(rows["tls "+dp][5]+strings.Join(rows["tls "+dp][6:], " "), "refused") {
			t.Errorf("the down port's error is not shown: %q", rows["tls "+dp])
		}
		ice := out[strings.Index(out, `{"iceServers"`):]
		var got iceServers
		if err := json.Unmarshal([]byte(ice), &got); err != nil {
			t.Fatalf("iceServers JSON: %v\n%s", err, ice)
		}
		wantURLs := []string{
			"stun:127.0.0.1:" + tp,
			"turn:127.0.0.1:" + tp + "?transport=udp",
			"turn:127.0.0.1:" + tp + "?transport=tcp",
			"turn:127.0.0.1:" + ap + "?transport=tcp",
		}
		if len(got.ICEServers) != 1 || strings.Join(got.ICEServers[0].URLs, " ") != strings.Join(wantURLs, " ") ||
			got.ICEServers[0].Username != probeTestUser || got.ICEServers[0].Credential != probeTestPassword {
			t.Errorf("iceServers %+v, want URLs %q with the credentials (turns: left out: its certificate is refused)", got, wantURLs)
		}
	})

	t.Run("json with a secret", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, "", append([]string{"probe", "127.0.0.1", "--secret", probeTestSecret, "--json"}, ports...)...)
		if err != nil {
			t.Fatalf("probe: %v\n%s", err, out)
		}
		var rep probeReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("JSON: %v\n%s", err, out)
		}
		relays := 0
		for _, r := range rep.Results {
			if r.Relay == "yes" {
				relays++
				if r.Relayed == "" || r.Mapped == "" || r.RTTMillis <= 0 {
					t.Errorf("relaying result without addresses or RTT: %+v", r)
				}
			}
		}
		if relays != 4 {
			t.Errorf("%d transports relayed, want 4: %+v", relays, rep.Results)
		}
		if u := rep.ICEServers.ICEServers[0].Username; !strings.HasSuffix(u, ":"+probeUser) {
			t.Errorf("username %q is not a REST credential for %s", u, probeUser)
		}
	})

	t.Run("without credentials", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, "", append([]string{"probe", "127.0.0.1"}, ports...)...)
		if !errors.Is(err, errNoRelayPath) || !strings.Contains(err.Error(), "no credentials") {
			t.Fatalf("err = %v, want errNoRelayPath naming the missing credentials", err)
		}
		if rows := probeRows(t, out); rows["udp "+tp][4] != "untested" && rows["udp "+tp][5] != "untested" {
			t.Errorf("udp row %q, want relay untested", rows["udp "+tp])
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, "", append([]string{"probe", "127.0.0.1", "--user", probeTestUser, "--password", "nope"}, ports...)...)
		if !errors.Is(err, errNoRelayPath) {
			t.Fatalf("err = %v, want errNoRelayPath", err)
		}
		if !strings.Contains(out, "allocate:") {
			t.Errorf("the allocation failure is not shown:\n%s", out)
		}
	})

	t.Run("through an HTTP proxy", func(t *testing.T) {
		t.Parallel()
		proxy := startConnectProxy(t)
		out, _, err := runCmd(t, "", append([]string{"probe", "127.0.0.1", "--user", probeTestUser, "--password", probeTestPassword,
			"--proxy", "http://" + proxy.addr}, ports...)...)
		if err != nil {
			t.Fatalf("probe: %v\n%s", err, out)
		}
		rows := probeRows(t, out)
		if f := rows["udp "+tp]; f[2] != "no" || !strings.Contains(strings.Join(f, " "), "UDP cannot pass an HTTP proxy") {
			t.Errorf("udp row %q, want skipped", f)
		}
		if f := rows["tcp "+ap]; f[2] != "yes" || f[5] != "yes" {
			t.Errorf("tcp row %q, want relaying through the proxy", f)
		}
		if got := proxy.targets(); !strings.Contains(got, "127.0.0.1:"+ap) || !strings.Contains(got, "127.0.0.1:"+tp) {
			t.Errorf("the proxy saw CONNECT to %q, want the TCP and TLS ports", got)
		}
	})

	t.Run("nothing up", func(t *testing.T) {
		t.Parallel()
		p := strconv.Itoa(turntest.FreePort(t))
		out, _, err := runCmd(t, "", "probe", "127.0.0.1", "--user", "u", "--password", "p",
			"--turn-port", p, "--turns-port", p, "--alt-port", p, "--timeout", "500ms")
		if !errors.Is(err, errNoRelayPath) {
			t.Fatalf("err = %v, want errNoRelayPath", err)
		}
		if !strings.Contains(out, "Nothing works from here") {
			t.Errorf("output does not say nothing works:\n%s", out)
		}
	})
}

func TestProbeUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"probe"}, "one argument"},
		{[]string{"probe", "a", "b"}, "one argument"},
		{[]string{"probe", "turn.example.org:3478"}, "without a port"},
		{[]string{"probe", "https://x"}, "without scheme"},
		{[]string{"probe", "x", "--user", "u"}, "go together"},
		{[]string{"probe", "x", "--user", "u", "--password", "p", "--secret", "s"}, "either"},
		{[]string{"probe", "x", "--proxy", "socks5://p:1"}, "http://HOST:PORT"},
		{[]string{"probe", "x", "--alt-port", "70000"}, "port 70000"},
	} {
		_, _, err := runCmd(t, "", tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.args, err, tt.want)
		}
	}
}

// connectProxy is a minimal HTTP CONNECT proxy on loopback.
type connectProxy struct {
	addr string
	mu   sync.Mutex
	seen []string
}

func (p *connectProxy) targets() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.seen, " ")
}

func startConnectProxy(t *testing.T) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	p := &connectProxy{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *connectProxy) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	p.mu.Lock()
	p.seen = append(p.seen, req.Host)
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", req.Host, 2*time.Second)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	go func() { _, _ = io.Copy(up, br); _ = up.Close() }()
	_, _ = io.Copy(c, up)
}
