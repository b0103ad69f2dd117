package main

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/probe"
	"github.com/postern/postern/relay"
)

// TestProbeCommand runs `postern probe` against a relay with UDP and TCP on
// one port (package probe tests the prober itself): the flags reach
// probe.Config, the table or JSON is printed, and the exit status says
// whether a relay path works, naming missing credentials.
func TestProbeCommand(t *testing.T) {
	a, err := auth.New(auth.Config{Realm: "probe.test", Users: map[string]string{"alice": "wonderland"}, Secrets: []string{"probe-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(turntest.FreePort(t))
	srv, err := relay.New(relay.Config{
		Listeners:         []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:" + port}, {Kind: relay.TCP, Addr: "127.0.0.1:" + port}},
		ListenersExplicit: true,
		Auth:              a,
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	turntest.Start(t, srv)
	down := strconv.Itoa(turntest.FreePort(t))
	ports := []string{"--turn-port", port, "--turns-port", down, "--alt-port", down, "--timeout", "1s"}

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, "", append([]string{"probe", "127.0.0.1", "--user", "alice", "--password", "wonderland"}, ports...)...)
		if err != nil {
			t.Fatalf("probe: %v\n%s", err, out)
		}
		udpRelays := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 6 && f[0] == "udp" && f[1] == port {
				udpRelays = f[2] == "yes" && f[5] == "yes" // the RTT takes two fields: "0.3 ms"
			}
		}
		if !udpRelays || !strings.Contains(out, probe.WordWorks) || !strings.Contains(out, "turn:127.0.0.1:"+port+"?transport=tcp") {
			t.Errorf("want UDP relaying and the iceServers that work, got:\n%s", out)
		}
	})
	t.Run("json with a secret", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, "", append([]string{"probe", "127.0.0.1", "--secret", "probe-secret", "--json"}, ports...)...)
		if err != nil {
			t.Fatalf("probe: %v\n%s", err, out)
		}
		var rep probe.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Results) != 6 || rep.Results[0].Relay != probe.RelayYes {
			t.Fatalf("JSON (%v):\n%s", err, out)
		}
		if !strings.HasPrefix(rep.Results[0].URL, "turn:127.0.0.1:"+port) {
			t.Errorf("URL %s", rep.Results[0].URL)
		}
	})
	t.Run("without credentials", func(t *testing.T) {
		t.Parallel()
		_, _, err := runCmd(t, "", append([]string{"probe", "127.0.0.1"}, ports...)...)
		if !errors.Is(err, probe.ErrNoRelayPath) || !strings.Contains(err.Error(), "no credentials") || !strings.Contains(err.Error(), "--secret") {
			t.Fatalf("err = %v, want ErrNoRelayPath naming the missing credentials and their flags", err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		_, _, err := runCmd(t, "", append([]string{"probe", "127.0.0.1", "--user", "alice", "--password", "nope"}, ports...)...)
		if !errors.Is(err, probe.ErrNoRelayPath) || strings.Contains(err.Error(), "no credentials") {
			t.Fatalf("err = %v, want ErrNoRelayPath alone", err)
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
