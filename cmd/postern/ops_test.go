package main

import (
	"bytes"
	"encoding/json"
	"github.com/postern/postern/config"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/admin"
)

func TestOperationsSettings(t *testing.T) {
	tests := []struct {
		name     string
		toml     string
		args     []string
		ext      string // ExternalIPs.String()
		auto     bool
		stun     []string
		admin    config.Admin
		hostIP   string // config.AdvertisedHost
		wantErr  string
		wantNone bool // no admin listener
	}{
		{name: "defaults", admin: config.Admin{Listen: "127.0.0.1:9641"}, stun: []string{"stun.l.google.com:19302", "stun.cloudflare.com:3478"}},
		{name: "one address", toml: "[relay]\nexternal_ip = \"203.0.113.7\"\n", ext: "203.0.113.7", hostIP: "203.0.113.7"},
		{name: "list", toml: "[relay]\nexternal_ip = [\"2001:db8::7\", \"203.0.113.7\", \"10.0.0.5=198.51.100.1\"]\n",
			ext: "203.0.113.7, 2001:db8::7, 10.0.0.5=198.51.100.1", hostIP: "203.0.113.7"},
		{name: "table", toml: "[relay]\nexternal_ip = { \"10.0.0.5\" = \"198.51.100.1\", \"fd00::5\" = \"2001:db8::5\" }\n",
			ext: "10.0.0.5=198.51.100.1, fd00::5=2001:db8::5"},
		{name: "table with one entry gives the ICE host", toml: "[relay]\nexternal_ip = { \"10.0.0.5\" = \"198.51.100.1\" }\n",
			ext: "10.0.0.5=198.51.100.1", hostIP: "198.51.100.1"},
		{name: "auto with servers", toml: "[relay]\nexternal_ip = \"auto\"\nstun_servers = [\"127.0.0.1:3478\"]\n",
			auto: true, stun: []string{"127.0.0.1:3478"}},
		{name: "flags replace the file", toml: "[relay]\nexternal_ip = \"203.0.113.7\"\n",
			args: []string{"--external-ip", "auto", "--external-ip", "10.0.0.5=198.51.100.1", "--stun-server", "[::1]:3478"},
			ext:  "10.0.0.5=198.51.100.1", hostIP: "198.51.100.1", auto: true, stun: []string{"[::1]:3478"}},
		{name: "admin from the file", toml: "[admin]\nlisten = \"0.0.0.0:9000\"\ntoken = \"tok\"\n",
			admin: config.Admin{Listen: "0.0.0.0:9000", Explicit: true, Token: "tok"}},
		{name: "admin default address written out", toml: "[admin]\nlisten = \"127.0.0.1:9641\"\n",
			admin: config.Admin{Listen: "127.0.0.1:9641"}},
		{name: "admin off in the file", toml: "[admin]\nlisten = \"off\"\n", wantNone: true},
		{name: "admin off by an empty flag", args: []string{"--admin", ""}, wantNone: true},
		{name: "admin off by flag", args: []string{"--admin", "off"}, wantNone: true},
		{name: "admin flags win", toml: "[admin]\nlisten = \"off\"\n", args: []string{"--admin", "[::1]:0", "--admin-token", "t2"},
			admin: config.Admin{Listen: "[::1]:0", Explicit: true, Token: "t2"}},

		{name: "bad external address", toml: "[relay]\nexternal_ip = \"public\"\n", wantErr: "relay.external_ip (--external-ip)"},
		{name: "external_ip of the wrong type", toml: "[relay]\nexternal_ip = 7\n", wantErr: "auto"},
		{name: "two IPv4 defaults", args: []string{"--external-ip", "203.0.113.7", "--external-ip", "203.0.113.8"}, wantErr: "already advertised"},
		{name: "STUN server without port", toml: "[relay]\nstun_servers = [\"stun.example.org\"]\n", wantErr: "relay.stun_servers (--stun-server)"},
		{name: "admin address without port", toml: "[admin]\nlisten = \"127.0.0.1\"\n", wantErr: "admin.listen (--admin)"},
		{name: "admin address by name", toml: "[admin]\nlisten = \"admin.example.org:9641\"\n", wantErr: "not an IP address"},
		{name: "token while off", toml: "[admin]\nlisten = \"off\"\ntoken = \"x\"\n", wantErr: "admin.token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.toml != "" {
				args = append([]string{"--config", writeFile(t, "c.toml", tt.toml)}, args...)
			}
			s, err := settingsFor(t, args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := relayOf(s)
			if got := r.ExternalIP.String(); got != tt.ext {
				t.Errorf("external IPs %q, want %q", got, tt.ext)
			}
			if config.ExternalAuto(s) != tt.auto {
				t.Errorf("auto = %v, want %v", config.ExternalAuto(s), tt.auto)
			}
			stun := config.Get(config.Settings(), s, "relay.stun_servers").([]string)
			if tt.stun != nil && strings.Join(stun, " ") != strings.Join(tt.stun, " ") {
				t.Errorf("STUN servers %v, want %v", stun, tt.stun)
			}
			if (len(r.DiscoverExternalIP) > 0) != tt.auto {
				t.Errorf("DiscoverExternalIP = %v with auto %v", r.DiscoverExternalIP, tt.auto)
			}
			want := tt.admin
			if want == (config.Admin{}) && !tt.wantNone {
				want = config.Admin{Listen: config.DefaultAdminListen}
			}
			if a := config.AdminOf(s); a != want {
				t.Errorf("admin %+v, want %+v", a, want)
			}
			if got := config.AdvertisedHost(s); (tt.hostIP == "" && got.IsValid()) || (tt.hostIP != "" && got.String() != tt.hostIP) {
				t.Errorf("ICE host address %v, want %q", got, tt.hostIP)
			}
		})
	}
}

// TestAdminTokenFromEnvironment: the token can come from the environment,
// out of reach of ps.
func TestAdminTokenFromEnvironment(t *testing.T) {
	t.Setenv(config.EnvAdminToken, "from-env")
	s, err := settingsFor(t)
	if err != nil {
		t.Fatal(err)
	}
	if tok := config.AdminOf(s).Token; tok != "from-env" {
		t.Errorf("admin token %q, want it from $%s", tok, config.EnvAdminToken)
	}
}

// opsRun runs "postern ARGS" in-process and returns stdout and the error.
func opsRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.Run(t.Context(), append([]string{"postern"}, args...))
	return out.String(), err
}

// jsonLogField returns field of the first JSON log record with message msg,
// or "" when there is none yet.
func jsonLogField(logs, msg, field string) string {
	for line := range strings.Lines(logs) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			switch v := rec[field].(type) {
			case string:
				return v
			case float64, bool:
				b, _ := json.Marshal(v)
				return string(b)
			}
		}
	}
	return ""
}

// startWithAdmin runs "postern serve" on loopback with two users, a
// loopback-allowed policy, JSON logs, extra args, and an admin listener on
// a free port; it returns the server and the admin address.
func startWithAdmin(t *testing.T, args ...string) (*running, string) {
	t.Helper()
	r := startServe(t, append([]string{"--listen", "udp://127.0.0.1:0",
		"--user", "alice:wonderland", "--user", "bob:builder", "--allow-peer", "127.0.0.2",
		"--realm", "ops.test", "--log-format", "json", "--admin", "127.0.0.1:0"}, args...)...)
	r.waitFor(t, "the serving log", func() bool { return jsonLogField(r.stderr.String(), "postern serving", "listeners") != "" })
	addr := jsonLogField(r.stderr.String(), "admin listening", "addr")
	if addr == "" {
		t.Fatalf("no admin listening log:\n%s", r.stderr)
	}
	return r, addr
}

// opsAllocate allocates on the UDP listener at addr as user and relays one
// datagram to a loopback peer, so the session has a permission and
// traffic. The allocation lives until the test ends.
func opsAllocate(t *testing.T, addr, user, password string) net.PacketConn {
	t.Helper()
	a := mustAllocate(t, addr, user, password)
	_ = a.peer.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.relayed.WriteTo([]byte("hello"), a.peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.peer.ReadFrom(make([]byte, 64)); err != nil {
		t.Fatalf("peer got nothing through the relay: %v", err)
	}
	return a.relayed
}

// TestSessionsAndKickCommands runs postern sessions and postern kick
// against a running postern serve.
func TestSessionsAndKickCommands(t *testing.T) {
	const token = "ops-test-token"
	r, adminAddr := startWithAdmin(t, "--admin-token", token)
	udp := listenerAddr(t, r.stderr.String(), "udp")
	a1 := opsAllocate(t, udp, "alice", "wonderland")
	opsAllocate(t, udp, "alice", "wonderland")
	b := opsAllocate(t, udp, "bob", "builder")
	auth := []string{"--admin", adminAddr, "--admin-token", token}

	out, err := opsRun(t, append([]string{"sessions"}, auth...)...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "TO CLIENT") {
		t.Fatalf("sessions table:\n%s", out)
	}
	for i, want := range []string{"alice", "alice", "bob"} {
		f := strings.Fields(lines[i+1])
		if len(f) < 11 || f[1] != want || f[3] != "udp" || f[4] != "udp://"+udp {
			t.Errorf("row %d = %q, want user %s over udp via udp://%s", i+1, lines[i+1], want, udp)
		}
	}
	if !strings.Contains(lines[1], a1.LocalAddr().String()) {
		t.Errorf("first row %q lacks the relayed address %v", lines[1], a1.LocalAddr())
	}

	out, err = opsRun(t, append([]string{"sessions", "--json", "--user", "bob"}, auth...)...)
	if err != nil {
		t.Fatal(err)
	}
	var list admin.SessionList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("sessions --json: %v\n%s", err, out)
	}
	if len(list.Sessions) != 1 || list.Sessions[0].User != "bob" || list.Sessions[0].Relayed != b.LocalAddr().String() ||
		len(list.Sessions[0].Permissions) != 1 || list.Sessions[0].ToPeer.Bytes != 5 || list.Sessions[0].ToClient.Bytes != 0 {
		t.Errorf("sessions --json --user bob: %+v", list.Sessions)
	}
	bobID := list.Sessions[0].ID

	// Kick one by ID, then the rest of a user.
	out, err = opsRun(t, append([]string{"kick", strconv.FormatUint(bobID, 10)}, auth...)...)
	if err != nil || strings.TrimSpace(out) != "kicked session "+strconv.FormatUint(bobID, 10) {
		t.Errorf("kick %d = %q, %v", bobID, out, err)
	}
	if _, err := opsRun(t, append([]string{"kick", strconv.FormatUint(bobID, 10)}, auth...)...); err == nil ||
		!strings.Contains(err.Error(), "no live session") {
		t.Errorf("second kick of %d: err = %v, want no live session", bobID, err)
	}
	out, err = opsRun(t, append([]string{"kick", "--user", "alice"}, auth...)...)
	if err != nil || strings.TrimSpace(out) != "kicked 2 session(s) of alice" {
		t.Errorf("kick --user alice = %q, %v", out, err)
	}
	if _, err := opsRun(t, append([]string{"kick", "--user", "alice"}, auth...)...); err == nil {
		t.Error("kick of a user without sessions succeeded")
	}
	out, err = opsRun(t, append([]string{"sessions"}, auth...)...)
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("sessions after the kicks = %q, %v; want only the header", out, err)
	}

	// The admin address and token can come from the server's config file;
	// a wrong or missing token is refused.
	cfg := writeFile(t, "c.toml", "[admin]\nlisten = \""+adminAddr+"\"\ntoken = \""+token+"\"\n")
	if _, err := opsRun(t, "sessions", "--config", cfg); err != nil {
		t.Errorf("sessions --config: %v", err)
	}
	if _, err := opsRun(t, "sessions", "--admin", adminAddr); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("sessions without the token: err = %v, want 401", err)
	}
	for _, args := range [][]string{{"kick"}, {"kick", "x"}, {"kick", "1", "--user", "bob"}, {"sessions", "extra"}} {
		if _, err := opsRun(t, append(args, auth...)...); err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, err := opsRun(t, append([]string{"sessions"}, auth...)...); err == nil || !strings.Contains(err.Error(), "--admin") {
		t.Errorf("sessions with the server stopped: err = %v, want a hint at --admin", err)
	}
}

// TestServeOperations checks what serve adds for operators: the startup
// summary, /readyz and /metrics on the admin listener, and external
// addresses in XOR-RELAYED-ADDRESS.
func TestServeOperations(t *testing.T) {
	r, adminAddr := startWithAdmin(t, "--relay-ip", "127.0.0.1", "--external-ip", "127.0.0.1=198.51.100.9",
		"--secret", "a-rest-secret")
	logs := r.stderr.String()
	for field, want := range map[string]string{
		"relay_ports":     "49152-65535",
		"relay_addresses": "127.0.0.1->198.51.100.9",
		"auth":            "static-users:2 rest-secrets:1",
		"admin":           adminAddr,
	} {
		if got := jsonLogField(logs, "postern serving", field); got != want {
			t.Errorf("startup summary %s = %q, want %q", field, got, want)
		}
	}
	if strings.Contains(logs, "a-rest-secret") || strings.Contains(logs, "wonderland") {
		t.Errorf("the logs hold a secret or password:\n%s", logs)
	}

	resp, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz = %d, want 200", resp.StatusCode)
	}

	udp := listenerAddr(t, logs, "udp")
	relayed := mustAllocate(t, udp, "alice", "wonderland").relayed
	if host, _, _ := net.SplitHostPort(relayed.LocalAddr().String()); host != "198.51.100.9" {
		t.Errorf("XOR-RELAYED-ADDRESS %v, want the external 198.51.100.9", relayed.LocalAddr())
	}
	resp, err = http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(body.String(), `postern_allocations_active{listener="udp://`+udp+`",transport="udp"} 1`) {
		t.Errorf("/metrics lacks the allocation:\n%s", body)
	}
}

// TestAdminBindFailure: a configured admin address that is taken stops the
// start; the default one only warns.
func TestAdminBindFailure(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	err = runServe(t, t.Context(), "--listen", "udp://127.0.0.1:0", "--user", "a:b", "--admin", taken.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "admin listener") || !strings.Contains(err.Error(), "off") {
		t.Errorf("serve with a taken admin address: %v, want an admin listener error naming the fix", err)
	}

	// The default address: hold it, if nobody else does, and expect a
	// warning instead of an error.
	if def, err := net.Listen("tcp", config.DefaultAdminListen); err == nil {
		defer def.Close()
	}
	r := startServe(t, "--listen", "udp://127.0.0.1:0", "--user", "a:b", "--log-format", "json")
	r.waitFor(t, "the serving log", func() bool { return strings.Contains(r.stderr.String(), `"msg":"postern serving"`) })
	if !strings.Contains(r.stderr.String(), "default admin listener skipped") {
		t.Errorf("no warning about the default admin listener:\n%s", r.stderr)
	}
}

// TestSystemdNotify: under Type=notify, serve says READY=1 once it
// serves and STOPPING=1 when it begins to stop.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("no unix datagram sockets here: %v", err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	read := func() string {
		t.Helper()
		buf := make([]byte, 256)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	r := startServe(t, "--listen", "udp://127.0.0.1:0", "--user", "a:b", "--admin", "off")
	if got := read(); got != "READY=1" {
		t.Errorf("first notification %q, want READY=1", got)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "STOPPING=1" {
		t.Errorf("second notification %q, want STOPPING=1", got)
	}
	if os.Getenv("NOTIFY_SOCKET") != sock {
		t.Error("NOTIFY_SOCKET was unset") // daemon.SdNotify(false, ...) keeps it
	}
}

// TestServeExternalAuto: with --external-ip auto, serve asks the STUN
// server before binding, advertises what it answered, logs it, and writes
// it in the iceServers JSON it prints.
func TestServeExternalAuto(t *testing.T) {
	stunServer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stunServer.Close()
	go func() { // a STUN server behind which everyone is 203.0.113.77
		buf := make([]byte, 1500)
		for {
			n, from, err := stunServer.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil {
				continue
			}
			resp := stun.MustBuild(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: net.IPv4(203, 0, 113, 77), Port: int(from.Port())}, stun.Fingerprint)
			_, _ = stunServer.WriteToUDPAddrPort(resp.Raw, from)
		}
	}()

	r := startServe(t, "--listen", "udp://127.0.0.1:0", "--log-format", "json", "--admin", "off",
		"--external-ip", "auto", "--stun-server", stunServer.LocalAddr().String())
	r.waitFor(t, "the iceServers JSON", func() bool { return strings.Contains(r.stdout.String(), "iceServers") })
	logs := r.stderr.String()
	if got := jsonLogField(logs, "external address discovered", "external_ip"); got != "203.0.113.77" {
		t.Errorf("discovered %q, want 203.0.113.77:\n%s", got, logs)
	}
	// A loopback listener relays on ::1 too, which no STUN server is asked about.
	if got := jsonLogField(logs, "postern serving", "relay_addresses"); got != "127.0.0.1->203.0.113.77 ::1" {
		t.Errorf("relay_addresses %q, want 127.0.0.1->203.0.113.77 ::1", got)
	}
	if !strings.Contains(r.stdout.String(), "turn:203.0.113.77:") {
		t.Errorf("the printed iceServers do not use the discovered address: %s", r.stdout)
	}
}
