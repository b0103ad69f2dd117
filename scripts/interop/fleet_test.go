package interop

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/cluster"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/internal/redistest"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

const (
	fleetSecret = "fleet-interop-secret"
	fleetAPIKey = "0123456789abcdef-fleet-interop"
	fleetBeat   = 200 * time.Millisecond
)

// fleetRelay starts an in-process node of the fleet on redisURL: a relay
// with a UDP and a TCP listener on 127.0.0.1 that accepts REST
// credentials of fleetSecret, registered as name with its turn: URLs.
func fleetRelay(t *testing.T, redisURL, name string) (*relay.Server, *cluster.Node, string) {
	t.Helper()
	n, err := cluster.New(cluster.Config{URL: redisURL, Node: name, Heartbeat: fleetBeat, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	key, err := n.NonceKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{Realm: "postern.test", Secrets: []string{fleetSecret}, NonceKey: key})
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(turntest.FreePort(t))
	srv, err := relay.New(relay.Config{
		Listeners:         []relay.ListenSpec{{Kind: relay.UDP, Addr: addr}, {Kind: relay.TCP, Addr: addr}},
		ListenersExplicit: true,
		Auth:              a,
		Fleet:             n,
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		RelayPorts:        allocations.PortRange{Low: 32768, High: 65535},
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	turntest.Start(t, srv)
	n.Attach(srv, []string{"turn:" + addr + "?transport=udp", "turn:" + addr + "?transport=tcp"}, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv, n, addr
}

// TestFleetBrowser: headless Chromium gets its RTCConfiguration from the
// fleet's credentials API (the handler of postern api, on Redis with two
// nodes, one draining) and connects through the node it was handed, the
// ready one: every allocation of the page is on that node, none on the
// draining one.
func TestFleetBrowser(t *testing.T) {
	browserTools(t) // skips without node and Chromium
	r := redistest.Start(t)
	draining, _, drainingAddr := fleetRelay(t, r.URL(), "a")
	ready, _, readyAddr := fleetRelay(t, r.URL(), "b")
	draining.SetDraining(true)

	api, err := cluster.New(cluster.Config{URL: r.URL(), Node: "api", Heartbeat: fleetBeat, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	h, err := api.NewAPI(iceapi.Config{Keys: []string{fleetAPIKey}, DefaultUser: restUser, DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, []string{fleetSecret})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { api.Watch(ctx); close(watched) }()
	defer func() { cancel(); <-watched }()
	srv := httptest.NewServer(h)
	defer srv.Close()

	var conf []byte
	turntest.WaitFor(t, "the fleet API handing out only the ready node", func() bool {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+iceapi.Path, strings.NewReader(`{"servers":2}`))
		req.Header.Set("Authorization", "Bearer "+fleetAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		conf, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(conf), readyAddr) && !strings.Contains(string(conf), drainingAddr)
	})
	var parsed iceapi.Configuration
	if err := json.Unmarshal(conf, &parsed); err != nil || len(parsed.ICEServers) != 1 {
		t.Fatalf("fleet API answered %s (%v): want one iceServers entry", conf, err)
	}
	t.Logf("the fleet API handed out %v", parsed.ICEServers[0].URLs)

	dir := t.TempDir()
	tg := &target{name: "fleet", cert: newCert(t, dir)}
	c := browserCase{Name: "fleet-api", RTCConfiguration: json.RawMessage(conf), Messages: browserMessages, TimeoutMs: 20000, RetryTimeout: true}
	results, skip := driveBrowser(t, tg, dir, []browserCase{c})
	if skip != "" {
		skipOrFail(t, skip)
	}
	res, ok := results[c.Name]
	if !ok {
		t.Fatal("no result from the browser driver")
	}
	if !res.OK {
		t.Fatalf("the page did not connect through the fleet's node: %s\nICE errors %v\ncandidates %v", res.Reason, res.ICEErrors, res.Candidates)
	}
	t.Logf("connected: pair %s, relay protocol %s, %d/%d messages in %d ms", res.Pair, res.RelayProtocol, res.Received, res.Sent, res.Ms)
	if n := ready.Stats().AllocationsCreated; n < 2 {
		t.Errorf("the ready node made %d allocations, want one per peer connection (2)", n)
	}
	if n := draining.Stats().AllocationsCreated; n != 0 {
		t.Errorf("the draining node made %d allocations, want none", n)
	}
}
