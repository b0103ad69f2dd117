package cluster_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/cluster"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/internal/redistest"
	"github.com/postern/postern/internal/turntest"
)

const apiKey = "0123456789abcdef-api-test"

// apiProcess starts the fleet's credentials API without a relay (what
// postern api runs) on redisURL, and returns its HTTP address.
func apiProcess(t *testing.T, redisURL string) (*cluster.Node, string) {
	t.Helper()
	n, err := cluster.New(cluster.Config{URL: redisURL, Node: "api", Heartbeat: heartbeat})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	h, err := n.NewAPI(iceapi.Config{Keys: []string{apiKey}, DefaultUser: "app", DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour}, []string{"file-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Watch(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return n, srv.URL
}

// post asks the API at base for iceServers and returns the status and
// the body.
func post(t *testing.T, base, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+iceapi.Path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url string) (int, cluster.APIHealth) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h cluster.APIHealth
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, h
}

// TestAPIProcess: the credentials API without a relay hands out the
// ready node, never the draining one, with a credential every node
// accepts; it is not in the registry itself; with no ready node it
// answers 503 saying why, and /readyz says so.
func TestAPIProcess(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a")
	b := startNode(t, r.URL(), "b")
	b.SetDraining(true)
	beat(t, a, b)
	api, base := apiProcess(t, r.URL())
	turntest.WaitFor(t, "the API's registry listing a and b", func() bool { return len(api.Nodes()) == 2 })

	for range 5 {
		status, body := post(t, base, `{"user":"ann","servers":2}`)
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var conf iceapi.Configuration
		if err := json.Unmarshal([]byte(body), &conf); err != nil {
			t.Fatal(err)
		}
		if len(conf.ICEServers) != 1 || !strings.Contains(strings.Join(conf.ICEServers[0].URLs, " "), a.addr) {
			t.Fatalf("iceServers %+v: want node a (%s) only, b drains", conf.ICEServers, a.addr)
		}
		if !strings.HasSuffix(conf.ICEServers[0].Username, ":ann") || conf.ICEServers[0].Credential == "" {
			t.Fatalf("credential %+v: want a REST credential of ann", conf.ICEServers[0])
		}
	}
	for _, info := range a.fleet.Nodes() {
		if info.Node == "api" {
			t.Fatal("the API process registered itself as a node")
		}
	}
	if status, h := get(t, base+"/readyz"); status != http.StatusOK || h.Ready != 1 || h.Nodes != 2 || !h.Redis {
		t.Fatalf("/readyz %d %+v, want 200 with 2 nodes, 1 ready", status, h)
	}

	a.SetDraining(true)
	beat(t, a, b)
	turntest.WaitFor(t, "the API seeing a drain", func() bool {
		status, _ := get(t, base+"/readyz")
		return status == http.StatusServiceUnavailable
	})
	status, body := post(t, base, "")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"unavailable"`) || !strings.Contains(body, "no node of the fleet is ready") {
		t.Fatalf("no ready node: %d %s; want 503 unavailable saying no node is ready", status, body)
	}
	if status, h := get(t, base+"/healthz"); status != http.StatusOK || h.Status != "ok" {
		t.Fatalf("/healthz %d %+v, want 200 ok (liveness)", status, h)
	}
	if status, _ := post(t, base+"/elsewhere", ""); status != http.StatusNotFound {
		t.Fatalf("another path: %d, want 404", status)
	}
}

// TestAPIProcessRedisDown: with Redis down, the API process hands out the
// nodes it last saw until their entries age out, then answers 503, and
// /healthz says Redis is unreachable.
func TestAPIProcessRedisDown(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "a")
	api, base := apiProcess(t, r.URL())
	turntest.WaitFor(t, "the API's registry listing a", func() bool { return len(api.Nodes()) == 1 })
	r.Kill()
	killed := time.Now()
	if status, body := post(t, base, ""); status != http.StatusOK || !strings.Contains(body, a.addr) {
		t.Fatalf("just after Redis went down: %d %s; want node a as last seen", status, body)
	}
	turntest.WaitFor(t, "the API refusing once a's entry aged out", func() bool {
		status, _ := post(t, base, "")
		return status == http.StatusServiceUnavailable
	})
	if took := time.Since(killed); took < api.Ageing()/2 {
		t.Fatalf("the API stopped handing out a %v after Redis went down, before its entry could age out (%v)", took, api.Ageing())
	}
	// The entry may age out before the failing read gives up (go-redis
	// retries the dial within the read's timeout): /healthz says so once
	// it has.
	turntest.WaitFor(t, "/healthz to say Redis is down", func() bool {
		_, h := get(t, base+"/healthz")
		return !h.Redis
	})
}
