package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/postern/postern/config"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/node"
)

// inProcess is node.Run run directly, so the test can ask it to reload and
// wait for the result.
type inProcess struct {
	logs    *turntest.SyncBuffer
	stdout  *turntest.SyncBuffer
	reloads chan chan<- error
	done    chan error
}

// loadFile reads and validates the configuration file at path, as serve
// --config does.
func loadFile(path string) func() (config.Values, error) {
	return func() (config.Values, error) {
		c, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		return config.Resolve(config.Settings(), c)
	}
}

// startInProcess runs serve with the configuration file at path until the
// test ends.
func startInProcess(t *testing.T, path string) *inProcess {
	t.Helper()
	s, err := loadFile(path)()
	if err != nil {
		t.Fatal(err)
	}
	p := &inProcess{logs: &turntest.SyncBuffer{}, stdout: &turntest.SyncBuffer{}, reloads: make(chan chan<- error), done: make(chan error, 1)}
	log := slog.New(slog.NewJSONHandler(p.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		p.done <- node.Run(ctx, nodeOptions(s, log, p.stdout, node.Reload{Load: loadFile(path), Requests: p.reloads}))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not return after cancellation")
		}
	})
	p.waitLog(t, "postern serving")
	return p
}

// reload asks the running serve to reload and returns the result.
func (p *inProcess) reload(t *testing.T) error {
	t.Helper()
	reply := make(chan error, 1)
	select {
	case p.reloads <- reply:
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not take the reload request")
	}
	select {
	case err := <-reply:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("reload did not finish")
		return nil
	}
}

// waitLog waits for a JSON log record with message msg.
func (p *inProcess) waitLog(t *testing.T, msg string) {
	t.Helper()
	waitForLog(t, p.logs, msg, 1)
}

// waitForLog waits until logs holds n records with message msg.
func waitForLog(t *testing.T, logs *turntest.SyncBuffer, msg string, n int) {
	t.Helper()
	needle := `"msg":"` + msg + `"`
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), needle) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q log record (want %d):\n%s", msg, n, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logField returns field of the first JSON log record with message msg.
func logField(t *testing.T, logs, msg, field string) string {
	t.Helper()
	for line := range strings.Lines(logs) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			if v, ok := rec[field].(string); ok {
				return v
			}
		}
	}
	t.Fatalf("no %q record with %s in the logs:\n%s", msg, field, logs)
	return ""
}

// allocation is a live TURN allocation on a server under test and a
// loopback peer it may send to.
type allocation struct {
	client  *turn.Client
	relayed net.PacketConn
	peer    net.PacketConn
}

// allocate allocates on the UDP listener at addr with the credentials; the
// error is the Allocate error.
func allocate(t *testing.T, addr, username, password string) (*allocation, error) {
	t.Helper()
	conn := turntest.ListenUDP(t)
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	client := turntest.Client(t, conn, addr, turn.ClientConfig{
		Username:      username,
		Password:      password,
		LoggerFactory: lf,
		RTO:           200 * time.Millisecond,
	})
	relayed, err := client.Allocate()
	if err != nil {
		client.Close()
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = relayed.Close() })
	return &allocation{client: client, relayed: relayed, peer: turntest.ListenPeer(t)}, nil
}

// mustAllocate is allocate that fails the test on error.
func mustAllocate(t *testing.T, addr, username, password string) *allocation {
	t.Helper()
	a, err := allocate(t, addr, username, password)
	if err != nil {
		t.Fatalf("Allocate as %q: %v", username, err)
	}
	return a
}

// exchange relays msg to the peer and its echo back.
func (a *allocation) exchange(t *testing.T, msg string) {
	t.Helper()
	a.relay(t, msg, "re:"+msg)
}

// relay sends msg through the relay to the peer, which answers reply.
func (a *allocation) relay(t *testing.T, msg, reply string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	_ = a.peer.SetDeadline(deadline)
	_ = a.relayed.SetDeadline(deadline)
	if _, err := a.relayed.WriteTo([]byte(msg), a.peer.LocalAddr()); err != nil {
		t.Fatalf("send %q through the relay: %v", msg, err)
	}
	buf := make([]byte, 1500)
	n, from, err := a.peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != msg {
		t.Fatalf("peer read %q, %v; want %q", buf[:n], err, msg)
	}
	if _, err := a.peer.WriteTo([]byte(reply), from); err != nil {
		t.Fatal(err)
	}
	n, _, err = a.relayed.ReadFrom(buf)
	if err != nil || string(buf[:n]) != reply {
		t.Fatalf("client read %q, %v; want %q", buf[:n], err, reply)
	}
}

// mint runs "postern credential --json ARGS" and returns the credential.
func mint(t *testing.T, args ...string) credentialJSON {
	t.Helper()
	out, _, err := runCmd(t, "", append([]string{"credential", "--json"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var c credentialJSON
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	return c
}

const reloadConfig = `
listen = ["udp://127.0.0.1:0"]
realm = "reload.test"
[auth]
secrets = [%SECRETS%]
users = { %USERS% }
[relay]
allow_peers = ["127.0.0.0/8"]
`

// writeConfig writes reloadConfig with secrets and users to path.
func writeConfig(t *testing.T, path, secrets, users string) {
	t.Helper()
	text := strings.NewReplacer("%SECRETS%", secrets, "%USERS%", users).Replace(reloadConfig)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMintedCredentialLifecycle: a credential minted by `postern credential`
// allocates on a running server, fails once it has expired, and fails after
// a reload removes its secret, while allocations made before the reload keep
// relaying and static users come and go with the file.
func TestMintedCredentialLifecycle(t *testing.T) {
	t.Setenv(envSecret, "")
	path := writeFile(t, "c.toml", "")
	writeConfig(t, path, `"old-secret"`, `alice = "wonderland"`)
	p := startInProcess(t, path)
	addr := strings.TrimPrefix(logField(t, p.logs.String(), "postern serving", "listeners"), "udp://")

	fresh := mint(t, "--config", path, "--user", "carol", "--ttl", "1h")
	short := mint(t, "--secret", "old-secret", "--user", "dave", "--ttl", "1s")
	byOld := mustAllocate(t, addr, fresh.Username, fresh.Credential)
	byOld.exchange(t, "before")
	byAlice := mustAllocate(t, addr, "alice", "wonderland")
	byAlice.exchange(t, "alice before")
	mustAllocate(t, addr, short.Username, short.Credential)

	// Expired: the server accepts a REST credential while expiry >= now.
	exp, _ := time.Parse(time.RFC3339, short.Expires)
	time.Sleep(time.Until(exp.Add(1100 * time.Millisecond)))
	if _, err := allocate(t, addr, short.Username, short.Credential); err == nil {
		t.Error("an expired credential allocated")
	}

	// Rotate: a new secret first, the old one gone; alice replaced by bob.
	writeConfig(t, path, `"new-secret"`, `bob = "builder"`)
	if err := p.reload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if _, err := allocate(t, addr, fresh.Username, fresh.Credential); err == nil {
		t.Error("a credential of the removed secret allocated after the reload")
	}
	if _, err := allocate(t, addr, "alice", "wonderland"); err == nil {
		t.Error("a removed user allocated after the reload")
	}
	next := mint(t, "--config", path, "--user", "carol")
	mustAllocate(t, addr, next.Username, next.Credential).exchange(t, "new")
	mustAllocate(t, addr, "bob", "builder").exchange(t, "bob")

	// The allocations made before the reload still relay both ways.
	byOld.exchange(t, "after")
	byAlice.exchange(t, "alice after")

	// Only credentials changed: nothing to restart for.
	if strings.Contains(p.logs.String(), "take effect only on restart") {
		t.Errorf("a credentials-only reload reported restart-only changes:\n%s", p.logs)
	}
}

// TestReloadFailureKeepsConfiguration: an invalid file is reported and
// changes nothing.
func TestReloadFailureKeepsConfiguration(t *testing.T) {
	path := writeFile(t, "c.toml", "")
	writeConfig(t, path, `"s1"`, `alice = "wonderland"`)
	p := startInProcess(t, path)
	addr := strings.TrimPrefix(logField(t, p.logs.String(), "postern serving", "listeners"), "udp://")

	for _, bad := range []string{
		"[auth]\nsecrets = [\"\"]\n", // invalid value
		"[auth\n",                    // syntax
		"[auth]\nsecret = [\"x\"]\n", // unknown key
		"",                           // no credentials left at all
	} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.reload(t); err == nil {
			t.Errorf("reload of %q succeeded", bad)
		}
	}
	if !strings.Contains(p.logs.String(), "configuration reload failed: the previous configuration stays in force") {
		t.Errorf("no failure logged:\n%s", p.logs)
	}
	mustAllocate(t, addr, "alice", "wonderland").exchange(t, "still")
}

// TestReloadRestartOnlySettings: a changed listener or quota is reported as
// needing a restart; the credentials still change.
func TestReloadRestartOnlySettings(t *testing.T) {
	path := writeFile(t, "c.toml", "")
	writeConfig(t, path, `"s1"`, `alice = "wonderland"`)
	p := startInProcess(t, path)
	addr := strings.TrimPrefix(logField(t, p.logs.String(), "postern serving", "listeners"), "udp://")

	text := strings.NewReplacer("%SECRETS%", `"s1"`, "%USERS%", `bob = "builder"`, "127.0.0.1:0", "127.0.0.1:1").Replace(reloadConfig) +
		"[limits]\nuser_quota = 5\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.reload(t); err != nil {
		t.Fatal(err)
	}
	if got := logField(t, p.logs.String(), "configuration reload: these settings changed but take effect only on restart; the running values stay", "keys"); got != "listen limits.user_quota" {
		// In declaration order.
		t.Errorf("restart-only keys %q, want \"listen limits.user_quota\"", got)
	}
	mustAllocate(t, addr, "bob", "builder").exchange(t, "bob")
}

// TestSIGHUP sends a real SIGHUP to this process while `postern serve`
// runs in it: the handler serve registers reloads the file (and the signal
// does not kill the test binary).
func TestSIGHUP(t *testing.T) {
	path := writeFile(t, "c.toml", "")
	writeConfig(t, path, `"s1"`, `alice = "wonderland"`)
	r := startServe(t, "--config", path, "--log-format", "json")
	r.waitFor(t, "the listening log", func() bool { return strings.Contains(r.stderr.String(), `"msg":"postern serving"`) })
	addr := listenerAddr(t, r.stderr.String(), "udp")
	mustAllocate(t, addr, "alice", "wonderland")

	writeConfig(t, path, `"s1"`, `bob = "builder"`)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "the reload log", func() bool { return strings.Contains(r.stderr.String(), `"msg":"configuration reloaded"`) })
	if _, err := allocate(t, addr, "alice", "wonderland"); err == nil {
		t.Error("alice allocated after SIGHUP removed her")
	}
	mustAllocate(t, addr, "bob", "builder").exchange(t, "bob")
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestReloadUsersFile: users-file lines made by `postern credential hash`
// authenticate with the password, and a reload picks up a rewritten file.
func TestReloadUsersFile(t *testing.T) {
	hash := func(user, password string) string {
		out, _, err := runCmd(t, password+"\n", "credential", "hash", "--user", user, "--realm", "users.test")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	users := writeFile(t, "users", "# made by postern credential hash\n"+hash("alice", "wonderland"))
	path := writeFile(t, "c.toml", "listen = [\"udp://127.0.0.1:0\"]\nrealm = \"users.test\"\n[auth]\nusers_file = \""+users+"\"\n[relay]\nallow_peers = [\"127.0.0.0/8\"]\n")
	p := startInProcess(t, path)
	addr := strings.TrimPrefix(logField(t, p.logs.String(), "postern serving", "listeners"), "udp://")
	byAlice := mustAllocate(t, addr, "alice", "wonderland")
	byAlice.exchange(t, "alice")
	if _, err := allocate(t, addr, "alice", "wrong"); err == nil {
		t.Error("a wrong password allocated")
	}

	if err := os.WriteFile(users, []byte(hash("bob", "builder")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.reload(t); err != nil {
		t.Fatal(err)
	}
	if _, err := allocate(t, addr, "alice", "wonderland"); err == nil {
		t.Error("alice allocated after the users file dropped her")
	}
	mustAllocate(t, addr, "bob", "builder").exchange(t, "bob")
	byAlice.exchange(t, "alice still relays")
}

// TestReloadGeneratedSecret: the secret generated when nothing is
// configured survives a reload that still configures nothing, and gives
// way once credentials are configured.
func TestReloadGeneratedSecret(t *testing.T) {
	path := writeFile(t, "c.toml", "listen = [\"udp://127.0.0.1:0\"]\n[relay]\nallow_peers = [\"127.0.0.0/8\"]\n")
	p := startInProcess(t, path)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.stdout.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	srv := decodeICEServers(t, p.stdout.String())
	addr := strings.TrimPrefix(srv.URLs[0], "stun:")

	if err := p.reload(t); err != nil {
		t.Fatal(err)
	}
	mustAllocate(t, addr, srv.Username, srv.Credential).exchange(t, "generated")

	if err := os.WriteFile(path, []byte("listen = [\"udp://127.0.0.1:0\"]\n[auth]\nusers = { a = \"b\" }\n[relay]\nallow_peers = [\"127.0.0.0/8\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.reload(t); err != nil {
		t.Fatal(err)
	}
	if _, err := allocate(t, addr, srv.Username, srv.Credential); err == nil {
		t.Error("the generated secret still works once credentials are configured")
	}
	mustAllocate(t, addr, "a", "b")
}
