package relay_test

import (
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

// TestLogsHoldNoSecrets runs allocations with a TURN REST credential and a
// static user, and failed attempts with wrong ones, all logged at debug
// level, and checks that no password, REST credential (HMAC), shared secret
// or long-term key appears in the logs, while the lifecycle lines are there.
func TestLogsHoldNoSecrets(t *testing.T) {
	var logs turntest.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startServer(t, func(c *relay.Config) { c.Logger = logger })
	addr := s.addrs[relay.UDP]

	restUser, restPass := auth.MintREST(testSecret, "carol", time.Hour, time.Now())
	client := newClient(t, clientConn(t, relay.UDP, addr, false), addr, restUser, restPass)
	rc, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, rc, turntest.EchoPeer(t).LocalAddr(), 2)
	_ = rc.Close() // Refresh with lifetime 0: "allocation ended"

	static := newClient(t, clientConn(t, relay.TCP, s.addrs[relay.TCP], false), s.addrs[relay.TCP], testUser, testPassword)
	rc2, err := static.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc2.Close()

	_, badPass := auth.MintREST("not-the-secret", "carol", time.Hour, time.Now())
	for _, cred := range [][2]string{{restUser, badPass}, {testUser, "a-wrong-password"}} {
		c := newClient(t, clientConn(t, relay.UDP, addr, false), addr, cred[0], cred[1])
		if _, err := c.Allocate(); err == nil {
			t.Fatal("allocate with a wrong credential succeeded")
		}
	}
	s.KickUser(testUser)
	turntest.WaitFor(t, "the lifecycle lines", func() bool {
		out := logs.String()
		return strings.Count(out, "allocation created") == 2 && strings.Count(out, "allocation ended") == 2
	})

	out := logs.String()
	key := auth.LongTermKey(testUser, testRealm, testPassword)
	for what, secret := range map[string]string{
		"REST credential":       restPass,
		"wrong REST credential": badPass,
		"password":              testPassword,
		"wrong password":        "a-wrong-password",
		"shared secret":         testSecret,
		"key (hex)":             hex.EncodeToString(key),
		"key (base64)":          base64.StdEncoding.EncodeToString(key),
		"key (raw)":             string(key),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("the logs contain the %s %q:\n%s", what, secret, out)
		}
	}
	for _, want := range []string{"user=" + restUser, "user=" + testUser, "authentication failed", "allocation kicked"} {
		if !strings.Contains(out, want) {
			t.Errorf("the logs lack %q:\n%s", want, out)
		}
	}
	// The end of an allocation that relayed says how much, each way.
	for line := range strings.Lines(out) {
		if strings.Contains(line, "allocation ended") && strings.Contains(line, "user="+restUser) {
			for _, counter := range []string{"packets_to_peer", "bytes_to_peer", "packets_to_client", "bytes_to_client"} {
				if !strings.Contains(line, " "+counter+"=") || strings.Contains(line, " "+counter+"=0") {
					t.Errorf("the end of an allocation that relayed logs no %s above 0: %s", counter, line)
				}
			}
		}
	}
}
