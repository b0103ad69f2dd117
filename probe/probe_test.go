package probe_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/probe"
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

// runProbe probes 127.0.0.1 with cfg (Host and Timeout filled in when
// empty) through doors, and returns the table it writes and its error.
func runProbe(t *testing.T, cfg probe.Config, doors []probe.Door) (string, probe.Report, error) {
	t.Helper()
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	p, err := probe.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep := p.Run(context.Background(), doors)
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	return out.String(), rep, rep.Err()
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

// TestProbe probes a server with UDP and TCP on one
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
	doors := probe.Doors(turnPort, downPort, altPort)
	tp, dp, ap := strconv.Itoa(turnPort), strconv.Itoa(downPort), strconv.Itoa(altPort)

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		out, _, err := runProbe(t, probe.Config{User: probeTestUser, Password: probeTestPassword}, doors)
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
		var got iceapi.Configuration
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
		_, got, err := runProbe(t, probe.Config{Secret: probeTestSecret}, doors)
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		var out bytes.Buffer
		if err := got.WriteJSON(&out); err != nil {
			t.Fatal(err)
		}
		var rep probe.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("JSON: %v\n%s", err, out.String())
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
		if u := rep.ICEServers.ICEServers[0].Username; !strings.HasSuffix(u, ":"+probe.RESTUser) {
			t.Errorf("username %q is not a REST credential for %s", u, probe.RESTUser)
		}
	})

	t.Run("without credentials", func(t *testing.T) {
		t.Parallel()
		out, rep, err := runProbe(t, probe.Config{}, doors)
		if !errors.Is(err, probe.ErrNoRelayPath) || rep.Tested() {
			t.Fatalf("err = %v, tested %v: want ErrNoRelayPath and relaying untested", err, rep.Tested())
		}
		if !strings.Contains(out, probe.WordAnswered) {
			t.Errorf("the table does not say relaying was not tested:\n%s", out)
		}
		if rows := probeRows(t, out); rows["udp "+tp][4] != "untested" && rows["udp "+tp][5] != "untested" {
			t.Errorf("udp row %q, want relay untested", rows["udp "+tp])
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		out, _, err := runProbe(t, probe.Config{User: probeTestUser, Password: "nope"}, doors)
		if !errors.Is(err, probe.ErrNoRelayPath) {
			t.Fatalf("err = %v, want ErrNoRelayPath", err)
		}
		if !strings.Contains(out, "allocate:") {
			t.Errorf("the allocation failure is not shown:\n%s", out)
		}
	})

	t.Run("through an HTTP proxy", func(t *testing.T) {
		t.Parallel()
		proxy := startConnectProxy(t)
		out, _, err := runProbe(t, probe.Config{User: probeTestUser, Password: probeTestPassword,
			Proxy: &url.URL{Scheme: "http", Host: proxy.addr}}, doors)
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
		p := turntest.FreePort(t)
		out, _, err := runProbe(t, probe.Config{User: "u", Password: "p", Timeout: 500 * time.Millisecond}, probe.Doors(p, p, p))
		if !errors.Is(err, probe.ErrNoRelayPath) {
			t.Fatalf("err = %v, want ErrNoRelayPath", err)
		}
		if !strings.Contains(out, "Nothing works from here") {
			t.Errorf("output does not say nothing works:\n%s", out)
		}
	})
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

// TestDoors: the six doors in their order, with their names, schemes and
// URLs (RFC 7064, RFC 7065), IPv6 hosts bracketed.
func TestDoors(t *testing.T) {
	doors := probe.Doors(probe.DefaultTURNPort, probe.DefaultTURNSPort, probe.DefaultAltPort)
	want := []struct{ name, scheme, url string }{
		{"UDP 3478", "turn", "turn:[2001:db8::1]:3478?transport=udp"},
		{"TCP 3478", "turn", "turn:[2001:db8::1]:3478?transport=tcp"},
		{"TLS 5349", "turns", "turns:[2001:db8::1]:5349?transport=tcp"},
		{"UDP 443", "turn", "turn:[2001:db8::1]:443?transport=udp"},
		{"TCP 443", "turn", "turn:[2001:db8::1]:443?transport=tcp"},
		{"TLS 443", "turns", "turns:[2001:db8::1]:443?transport=tcp"},
	}
	if len(doors) != len(want) {
		t.Fatalf("%d doors, want %d", len(doors), len(want))
	}
	for i, d := range doors {
		if d.Name != want[i].name || d.Scheme != want[i].scheme || d.URL("2001:db8::1") != want[i].url || d.Why == "" {
			t.Errorf("door %d = %+v (URL %s), want %+v", i, d, d.URL("2001:db8::1"), want[i])
		}
		if err := d.Check(); err != nil {
			t.Errorf("door %s: %v", d.Name, err)
		}
	}
	if got := doors[0].STUNURL("192.0.2.1"); got != "stun:192.0.2.1:3478" {
		t.Errorf("STUNURL = %s", got)
	}
	if err := (probe.Door{Transport: probe.UDP, Port: 70000}).Check(); err == nil || !strings.Contains(err.Error(), "port 70000") {
		t.Errorf("port 70000: %v", err)
	}
	if err := (probe.Door{Transport: "sctp", Port: 1}).Check(); err == nil {
		t.Error("transport sctp accepted")
	}
}

// TestNewRefuses: a Config a Prober cannot run is refused with an error,
// not a panic at Run.
func TestNewRefuses(t *testing.T) {
	for name, cfg := range map[string]probe.Config{
		"no host":            {Timeout: time.Second},
		"no timeout":         {Host: "x"},
		"user without pass":  {Host: "x", Timeout: time.Second, User: "u"},
		"user and secret":    {Host: "x", Timeout: time.Second, User: "u", Password: "p", Secret: "s"},
		"proxy not http":     {Host: "x", Timeout: time.Second, Proxy: &url.URL{Scheme: "socks5", Host: "p:1"}},
		"proxy without host": {Host: "x", Timeout: time.Second, Proxy: &url.URL{Scheme: "http"}},
	} {
		if _, err := probe.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// TestReportWords: the words of a result and of the verdict.
func TestReportWords(t *testing.T) {
	r := probe.Result{Reachable: true, RTTMillis: 0.31, Relay: probe.RelayYes, Relayed: "192.0.2.1:50000", CertError: "x509: bad"}
	if r.ReachableWord() != "yes" || r.RTTWord() != "0.3 ms" || r.RelayWord() != "yes" {
		t.Errorf("words %q %q %q", r.ReachableWord(), r.RTTWord(), r.RelayWord())
	}
	if got, want := r.Detail(), probe.WordCertRefused+"x509: bad; "+probe.WordRelayedVia+"192.0.2.1:50000"; got != want {
		t.Errorf("Detail = %q, want %q", got, want)
	}
	down := probe.Result{Error: "refused"}
	if down.ReachableWord() != "no" || down.RTTWord() != "-" || down.RelayWord() != "-" || down.Detail() != "refused" {
		t.Errorf("down: %q %q %q %q", down.ReachableWord(), down.RTTWord(), down.RelayWord(), down.Detail())
	}
	none := probe.Report{ICEServers: iceapi.Configuration{ICEServers: []iceapi.ICEServer{}}}
	if none.Verdict() != probe.WordNothingWorks || !errors.Is(none.Err(), probe.ErrNoRelayPath) {
		t.Errorf("empty report: %q, %v", none.Verdict(), none.Err())
	}
	some := iceapi.Configuration{ICEServers: []iceapi.ICEServer{{URLs: []string{"stun:x:1"}}}}
	untested := probe.Report{Results: []probe.Result{{Reachable: true, Relay: probe.RelayUntested}}, ICEServers: some}
	if untested.Verdict() != probe.WordAnswered || untested.Err() == nil {
		t.Errorf("untested report: %q, %v", untested.Verdict(), untested.Err())
	}
	relayed := probe.Report{Results: []probe.Result{r}, ICEServers: some}
	if relayed.Verdict() != probe.WordWorks || relayed.Err() != nil {
		t.Errorf("relayed report: %q, %v", relayed.Verdict(), relayed.Err())
	}
}
