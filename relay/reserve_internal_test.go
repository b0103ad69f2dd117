package relay

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/postern/postern/auth"
)

// TestReservationExpiryReleasesQuota: an unredeemed reservation closes its
// socket when it expires and stops counting against its owner's quotas.
func TestReservationExpiryReleasesQuota(t *testing.T) {
	au, err := auth.New(auth.Config{Realm: "r", Users: map[string]string{"u": "p"}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Auth: au, Policy: auth.NewPeerPolicy(nil, nil), UserQuota: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.table.Close)
	s.reserved.lifetime = 50 * time.Millisecond
	lo, client := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.5")
	conn, _, err := s.reserved.listenEvenPair(lo, "u", client)
	if err != nil {
		t.Fatal(err)
	}
	s.ports.Close(conn)
	if n := s.table.Holds(); n != 1 {
		t.Fatalf("%d holds after a reservation, want 1", n)
	}
	if _, _, err := s.reserved.listenEvenPair(lo, "u", client); err == nil {
		t.Fatal("a second reservation past user quota 1 was made")
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.reserved.len() != 0 || s.table.Holds() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after expiry: %d reservations, %d holds; want 0, 0", s.reserved.len(), s.table.Holds())
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, _, err = s.reserved.listenEvenPair(lo, "u", client)
	if err != nil {
		t.Fatalf("reserving after the first expired: %v", err)
	}
	s.ports.Close(conn)
	s.reserved.closeAll()
	if n := s.table.Holds(); n != 0 {
		t.Fatalf("%d holds after closeAll, want 0", n)
	}
}
