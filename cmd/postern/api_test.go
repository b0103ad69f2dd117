package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/cluster"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/internal/redistest"
	"github.com/postern/postern/internal/turntest"
)

// runAPI runs "postern api ARGS" until the test ends and returns its
// logs and the channel of its result.
func runAPI(t *testing.T, args ...string) (*turntest.SyncBuffer, chan error) {
	t.Helper()
	logs := &turntest.SyncBuffer{}
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, logs
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, append([]string{"postern", "api"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("postern api did not return after cancellation")
		}
	})
	return logs, done
}

// TestAPICommand: postern api, with the nodes' own file and no relay,
// hands out the ready node of two (the other draining), with a credential
// that node accepts; with no node ready it answers 503 saying so.
func TestAPICommand(t *testing.T) {
	r := redistest.Start(t)
	_, udpA, _ := fleetNode(t, r.URL(), "a")
	_, udpB, _ := fleetNode(t, r.URL(), "b")
	cl, err := cluster.Dial(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Do(t.Context(), cluster.Op{Op: cluster.OpDrain, Node: "b"}, 2*time.Second); err != nil {
		t.Fatal(err)
	}

	file := writeFile(t, "api.toml", strings.NewReplacer("%REDIS%", r.URL(), "%NODE%", "api").Replace(fleetConfig))
	listen := fmt.Sprintf("127.0.0.1:%d", turntest.FreePort(t))
	logs, done := runAPI(t, "--config", file, "--listen", "http://"+listen)
	url := "http://" + listen + iceapi.Path
	turntest.WaitFor(t, "postern api to hand out a", func() bool {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("postern api returned %v:\n%s", err, logs)
		default:
		}
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	for range 3 {
		conf := askAPI(t, url, `{"user":"dave","servers":2}`)
		if len(conf.ICEServers) != 1 {
			t.Fatalf("iceServers %+v: want node a only", conf.ICEServers)
		}
		got := strings.Join(conf.ICEServers[0].URLs, " ")
		if !strings.Contains(got, udpA) || strings.Contains(got, udpB) {
			t.Fatalf("URLs %q: want a's %s, never the draining b's %s", got, udpA, udpB)
		}
	}
	conf := askAPI(t, url, `{"user":"dave"}`)
	a, err := allocate(t, udpA, conf.ICEServers[0].Username, conf.ICEServers[0].Credential)
	if err != nil {
		t.Fatalf("the API's credential on node a: %v", err)
	}
	_ = a.relayed.Close()

	if _, err := cl.Do(t.Context(), cluster.Op{Op: cluster.OpDrain, Node: "a"}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	turntest.WaitFor(t, "postern api refusing with every node draining", func() bool {
		return apiStatus(t, url, `{}`) == http.StatusServiceUnavailable
	})
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header.Set("Authorization", "Bearer 0123456789abcdef-fleet")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), "no node of the fleet is ready") {
		t.Fatalf("503 body %s: want it to say no node is ready", body)
	}
}

// TestAPICommandErrors: postern api without a fleet or an address says
// what to set.
func TestAPICommandErrors(t *testing.T) {
	noFleet := writeFile(t, "alone.toml", strings.NewReplacer(`redis = "%REDIS%"`, "", `node = "%NODE%"`, "", `heartbeat = "100ms"`, "").Replace(fleetConfig))
	err := newApp().Run(t.Context(), []string{"postern", "api", "--config", noFleet})
	if err == nil || !strings.Contains(err.Error(), "cluster.redis is empty") {
		t.Fatalf("without [cluster] redis: %v", err)
	}
	noAPI := writeFile(t, "noapi.toml", strings.Replace(strings.NewReplacer("%REDIS%", "redis://127.0.0.1:1", "%NODE%", "x").Replace(fleetConfig),
		"[credentials_api]\nlisten = \"http://127.0.0.1:0\"\napi_keys = [\"0123456789abcdef-fleet\"]\n", "", 1))
	err = newApp().Run(t.Context(), []string{"postern", "api", "--config", noAPI})
	if err == nil || !strings.Contains(err.Error(), "credentials_api.listen is empty") {
		t.Fatalf("without [credentials_api] listen: %v", err)
	}
	if err := newApp().Run(t.Context(), []string{"postern", "api"}); err == nil || !strings.Contains(err.Error(), "config") {
		t.Fatalf("without --config: %v", err)
	}
}

// TestAPICommandHTTPS: postern api serves HTTPS with [tls] cert and key.
func TestAPICommandHTTPS(t *testing.T) {
	r := redistest.Start(t)
	_, udpA, _ := fleetNode(t, r.URL(), "a")
	now := time.Now()
	certPath, keyPath := writeCert(t, []string{"127.0.0.1"}, now.Add(-time.Hour), now.Add(time.Hour))
	file := writeFile(t, "api.toml", strings.NewReplacer("%REDIS%", r.URL(), "%NODE%", "api").Replace(fleetConfig)+
		"[tls]\ncert = \""+certPath+"\"\nkey = \""+keyPath+"\"\n")
	listen := fmt.Sprintf("127.0.0.1:%d", turntest.FreePort(t))
	logs, done := runAPI(t, "--config", file, "--listen", "https://"+listen)

	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("bad test certificate")
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	var body []byte
	turntest.WaitFor(t, "postern api over HTTPS handing out a", func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("postern api returned %v:\n%s", err, logs)
		default:
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+listen+iceapi.Path, nil)
		req.Header.Set("Authorization", "Bearer 0123456789abcdef-fleet")
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		body, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !strings.Contains(string(body), udpA) {
		t.Fatalf("answer %s: want node a's %s", body, udpA)
	}
}
