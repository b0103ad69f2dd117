package node

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/postern/postern/config"
)

// TestReloadKeepsNonces: the authenticator a reload builds accepts nonces
// issued before it (one nonce key per run), so clients are not sent back
// for a new nonce by every reload.
func TestReloadKeepsNonces(t *testing.T) {
	s := config.Values{"auth.secrets": []string{"s"}}
	c := credentials{secrets: config.Secrets(s)}
	l, err := newLive(s, c, c.secrets, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddr("192.0.2.1")
	nonce := l.auth.Nonce(client)
	next, err := l.newAuth(config.Values{"auth.secrets": []string{"other"}}, credentials{secrets: []string{"other"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := next.CheckNonce(nonce, client); err != nil {
		t.Errorf("nonce from before the reload: %v", err)
	}
	// A second run draws its own key.
	l2, err := newLive(s, c, c.secrets, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.auth.CheckNonce(nonce, client); err == nil {
		t.Error("another run accepted the nonce")
	}
}
