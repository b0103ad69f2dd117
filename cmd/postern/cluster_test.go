package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/cluster"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/internal/redistest"
	"github.com/postern/postern/internal/turntest"
)

const fleetConfig = `
listen = ["udp://127.0.0.1:0"]
realm = "fleet.test"
[auth]
secrets = ["file-secret"]
[relay]
allow_peers = ["127.0.0.0/8"]
[admin]
listen = "off"
[credentials_api]
listen = "http://127.0.0.1:0"
api_keys = ["0123456789abcdef-fleet"]
[cluster]
redis = "%REDIS%"
node = "%NODE%"
heartbeat = "100ms"
`

// fleetNode starts "postern serve" as node name of the fleet on redisURL
// and returns it with its UDP listener and credentials API URL.
func fleetNode(t *testing.T, redisURL, name string) (p *inProcess, udp, api string) {
	t.Helper()
	p = startInProcess(t, writeFile(t, name+".toml", strings.NewReplacer("%REDIS%", redisURL, "%NODE%", name).Replace(fleetConfig)))
	udp = strings.TrimPrefix(logField(t, p.logs.String(), "postern serving", "listeners"), "udp://")
	api = logField(t, p.logs.String(), "credentials API listening", "url")
	return p, udp, api
}

// askAPI posts body to the credentials API at url.
func askAPI(t *testing.T, url, body string) iceapi.Configuration {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer 0123456789abcdef-fleet")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("credentials API: %d %s", resp.StatusCode, b)
	}
	var conf iceapi.Configuration
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	return conf
}

// apiStatus posts body to the credentials API at url and returns the
// status.
func apiStatus(t *testing.T, url, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer 0123456789abcdef-fleet")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestServeFleet: two serve processes on one Redis. The credentials API
// of node a hands out the URLs of the best live node (not a when it
// drains), a secret pushed into Redis is in force on every node without a
// restart, and the API mints with it.
func TestServeFleet(t *testing.T) {
	r := redistest.Start(t)
	_, udpA, apiA := fleetNode(t, r.URL(), "a")
	_, udpB, _ := fleetNode(t, r.URL(), "b")
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()

	urlsOf := func(conf iceapi.Configuration) string {
		var s []string
		for _, srv := range conf.ICEServers {
			s = append(s, strings.Join(srv.URLs, " "))
		}
		return strings.Join(s, " | ")
	}
	// Two servers asked: both nodes, each once.
	turntest.WaitFor(t, "both nodes in the registry", func() bool {
		u := urlsOf(askAPI(t, apiA, `{"servers":2}`))
		return strings.Contains(u, udpA) && strings.Contains(u, udpB)
	})

	// a drains (a fleet operation): its API hands out b only.
	cl, err := cluster.Dial(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Do(t.Context(), cluster.Op{Op: cluster.OpDrain, Node: "a"}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	turntest.WaitFor(t, "a's API to hand out b only", func() bool {
		u := urlsOf(askAPI(t, apiA, `{"servers":2}`))
		return strings.Contains(u, udpB) && !strings.Contains(u, udpA)
	})

	// b drains too: no node is ready, and the API hands out none.
	if _, err := cl.Do(t.Context(), cluster.Op{Op: cluster.OpDrain, Node: "b"}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	turntest.WaitFor(t, "a's API to refuse with every node draining", func() bool {
		return apiStatus(t, apiA, `{}`) == http.StatusServiceUnavailable
	})
	if _, err := cl.Do(t.Context(), cluster.Op{Op: cluster.OpUndrain, Node: "b"}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	turntest.WaitFor(t, "b serving again", func() bool { return apiStatus(t, apiA, `{}`) == http.StatusOK })

	// A secret pushed first into Redis: a credential of it allocates on
	// b (whose file knows only file-secret), and a's API mints with it.
	if err := rdb.LPush(context.Background(), "postern:secrets", "fleet-secret").Err(); err != nil {
		t.Fatal(err)
	}
	user, pass := auth.MintREST("fleet-secret", "carol", time.Hour, time.Now())
	turntest.WaitFor(t, "the fleet secret on b", func() bool {
		a, err := allocate(t, udpB, user, pass)
		if err == nil {
			_ = a.relayed.Close()
		}
		return err == nil
	})
	conf := askAPI(t, apiA, `{"user":"carol"}`)
	a, err := allocate(t, udpB, conf.ICEServers[0].Username, conf.ICEServers[0].Credential)
	if err != nil {
		t.Fatalf("credential from a's API on b: %v", err)
	}
	_ = a.relayed.Close() // Refresh 0: the allocation's final usage record

	// With no [usage] table, a fleet node's usage records go to the
	// fleet's Redis, named by the node.
	turntest.WaitFor(t, "b's usage record in the fleet's stream", func() bool {
		msgs, err := rdb.XRange(context.Background(), "postern:usage", "-", "+").Result()
		if err != nil {
			return false
		}
		for _, m := range msgs {
			if raw, _ := m.Values["record"].(string); strings.Contains(raw, `"node":"b"`) && strings.Contains(raw, `"user":"carol"`) {
				return true
			}
		}
		return false
	})
}

// TestCheckConfigCluster: check-config validates [cluster], each problem
// naming the key, the flag and the fix.
func TestCheckConfigCluster(t *testing.T) {
	for _, tt := range []struct{ toml, want string }{
		{"[cluster]\nredis = \"http://10.0.0.5:6379\"\n", "cluster.redis (--cluster-redis) \"http://10.0.0.5:6379\": write redis://HOST:PORT, or rediss://HOST:PORT for TLS"},
		{"[cluster]\nredis = \"redis://\"\n", "cluster.redis (--cluster-redis)"},
		{"[cluster]\nnode = \"a\"\n", "set cluster.redis (--cluster-redis)"},
		{"[cluster]\nredis = \"redis://127.0.0.1:6379\"\nnode = \"a b\"\n", "cluster.node (--cluster-node) \"a b\": write at most 64 letters"},
		{"[cluster]\nredis = \"redis://127.0.0.1:6379\"\nregion_rules = \"10.0.0.0/33=eu\"\n", "cluster.region_rules (--cluster-region-rules)"},
		{"[cluster]\nredis = \"redis://127.0.0.1:6379\"\nregion_rules = [\"10.0.0.0/8=eu\", \"10.0.0.0=us\"]\n", "cluster.region_rules (--cluster-region-rules)"},
		{"[cluster]\nredis = \"redis://127.0.0.1:6379\"\nregion_rules = [\"10.0.0.0/8=eu\", 7]\n", "cluster.region_rules"},
		{"[cluster]\nredis = \"redis://127.0.0.1:6379\"\nnonce_key_file = \"/nonexistent/key\"\n", "openssl rand -hex 32"},
		{"[cluster]\nredis = \"redis://127.0.0.1:6379\"\nheartbeat = 2\n", "cluster.heartbeat"},
	} {
		path := writeFile(t, "c.toml", tt.toml)
		_, errOut, err := runCmd(t, "", "check-config", path)
		if err == nil || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: err %v, stderr %q; want it to name %q", tt.toml, err, errOut, tt.want)
		}
	}
	// region_rules is a list; the one string of commas of before still reads.
	for _, rules := range []string{`["10.0.0.0/8=eu", "2001:db8::/32=us"]`, `"10.0.0.0/8=eu, 2001:db8::/32=us"`} {
		ok := writeFile(t, "ok.toml", "[auth]\nsecrets = [\"s\"]\n[cluster]\nredis = \"rediss://user:pw@redis.example.org:6380/1\"\nnode = \"eu-1\"\nregion = \"eu\"\nregion_rules = "+rules+"\n")
		if _, errOut, err := runCmd(t, "", "check-config", ok); err != nil {
			t.Errorf("valid [cluster] with region_rules = %s: %v\n%s", rules, err, errOut)
		}
	}
}

// TestFleetCommands: postern sessions, kick and drain with --fleet act on
// every node through Redis: the sessions of both nodes, a kick from the
// command line ending an allocation on node a, a drain of node b alone.
func TestFleetCommands(t *testing.T) {
	r := redistest.Start(t)
	_, udpA, _ := fleetNode(t, r.URL(), "a")
	_, _, _ = fleetNode(t, r.URL(), "b")
	user, pass := auth.MintREST("file-secret", "dave", time.Hour, time.Now())
	if _, err := allocate(t, udpA, user, pass); err != nil {
		t.Fatal(err)
	}
	fleet := []string{"--fleet", "--cluster-redis", r.URL()}
	out, errOut, err := runCmd(t, "", append([]string{"sessions"}, fleet...)...)
	if err != nil || !strings.Contains(out, "a/1 ") || !strings.Contains(out, "dave") {
		t.Fatalf("sessions --fleet: %v %s\n%s", err, errOut, out)
	}
	out, errOut, err = runCmd(t, "", append([]string{"sessions", "--json"}, fleet...)...)
	if err != nil || !strings.Contains(out, `"node": "b"`) || !strings.Contains(out, `"node": "a"`) {
		t.Fatalf("sessions --fleet --json: %v %s\n%s", err, errOut, out)
	}
	if out, errOut, err = runCmd(t, "", append([]string{"kick", "a/1"}, fleet...)...); err != nil || !strings.Contains(out, "kicked session a/1") {
		t.Fatalf("kick --fleet a/1: %v %s\n%s", err, errOut, out)
	}
	if out, _, _ = runCmd(t, "", append([]string{"sessions"}, fleet...)...); strings.Contains(out, "dave") {
		t.Fatalf("the kicked session is still listed:\n%s", out)
	}
	if _, _, err = runCmd(t, "", append([]string{"kick", "a/1"}, fleet...)...); err == nil || !strings.Contains(err.Error(), "no live session") {
		t.Fatalf("kick of a gone session: %v", err)
	}
	out, errOut, err = runCmd(t, "", append([]string{"drain", "--node", "b"}, fleet...)...)
	if err != nil || strings.TrimSpace(out) != "b: draining" {
		t.Fatalf("drain --fleet --node b: %v %s\n%q", err, errOut, out)
	}
	if _, _, err := runCmd(t, "", "sessions", "--fleet"); err == nil || !strings.Contains(err.Error(), "--cluster-redis") {
		t.Fatalf("--fleet without Redis: %v", err)
	}
}

// TestServeFleetRedisDownAtStart: a node whose Redis is down when it
// starts serves anyway (alone, with a nonce key of its own), says so,
// and joins the fleet once Redis answers.
func TestServeFleetRedisDownAtStart(t *testing.T) {
	r := redistest.Start(t)
	r.Kill()
	start := time.Now()
	p, udp, _ := fleetNode(t, r.URL(), "late")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("start with Redis down took %v", d)
	}
	if !strings.Contains(p.logs.String(), "no shared nonce key") {
		t.Errorf("no warning about the nonce key:\n%s", p.logs)
	}
	user, pass := auth.MintREST("file-secret", "erin", time.Hour, time.Now())
	if _, err := allocate(t, udp, user, pass); err != nil {
		t.Fatalf("allocation with Redis down since start: %v", err)
	}
	r.Restart()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	turntest.WaitFor(t, "the node in the registry", func() bool {
		return rdb.Exists(context.Background(), "postern:node:late").Val() == 1
	})
	waitForLog(t, p.logs, "cluster: Redis reachable again: registry, nonce key and quota counts re-synced", 1)
}
