package relay_test

import (
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// corruptFingerprint flips a bit of m's FINGERPRINT value (the last 4
// bytes).
func corruptFingerprint(m *stun.Message) []byte {
	b := append([]byte(nil), m.Raw...)
	b[len(b)-1] ^= 0x01
	return b
}

// answered reports whether conn gets any answer to b within wait.
func answered(t *testing.T, conn net.Conn, b []byte, wait time.Duration) bool {
	t.Helper()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	_, err := conn.Read(make([]byte, 1500))
	return err == nil
}

// TestFingerprintVerified: a request whose FINGERPRINT is wrong is
// discarded silently (RFC 8489 §7.3), over UDP and TCP, authenticated or
// not; the TCP connection stays up, and the same request with a correct
// FINGERPRINT, or none, is answered.
func TestFingerprintVerified(t *testing.T) {
	s := startServer(t)
	binding := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	notLast := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint, stun.NewSoftware("x"))

	c := newRawClient(t, s.addrs[relay.UDP])
	if answered(t, c.conn, corruptFingerprint(binding), 300*time.Millisecond) {
		t.Error("UDP: a Binding request with a wrong FINGERPRINT was answered")
	}
	if answered(t, c.conn, notLast.Raw, 300*time.Millisecond) {
		t.Error("UDP: a Binding request with FINGERPRINT before another attribute was answered")
	}
	if !answered(t, c.conn, binding.Raw, time.Second) {
		t.Error("UDP: a Binding request with a correct FINGERPRINT was not answered")
	}

	// Authenticated: an Allocate with valid credentials but a corrupt
	// FINGERPRINT makes nothing.
	c.authed(stun.MethodRefresh) // fetches a nonce (437: no allocation yet)
	alloc := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		proto.RequestedTransport(proto.ProtoUDP), stun.NewUsername(c.user), stun.NewRealm(testRealm), c.nonce,
		stun.NewLongTermIntegrity(c.user, testRealm, c.pass), stun.Fingerprint)
	if answered(t, c.conn, corruptFingerprint(alloc), 300*time.Millisecond) {
		t.Error("UDP: an Allocate with a wrong FINGERPRINT was answered")
	}
	if n := s.Table().Len(); n != 0 {
		t.Errorf("an Allocate with a wrong FINGERPRINT made %d allocations", n)
	}

	tcp := dialTCP(t, s.addrs[relay.TCP])
	if answered(t, tcp, corruptFingerprint(binding), 300*time.Millisecond) {
		t.Error("TCP: a Binding request with a wrong FINGERPRINT was answered")
	}
	plain := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if !answered(t, tcp, plain.Raw, time.Second) {
		t.Error("TCP: the connection was not served after a request with a wrong FINGERPRINT")
	}
}
