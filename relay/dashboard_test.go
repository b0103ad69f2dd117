package relay_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// TestRecentAuthFailures: failed authentications land in a bounded ring,
// newest first, with the client, transport, reason and the USERNAME cut
// to 64 bytes of valid UTF-8; stale nonces and successes are not failures.
func TestRecentAuthFailures(t *testing.T) {
	s := startServer(t)
	if got := s.RecentAuthFailures(); len(got) != 0 {
		t.Fatalf("fresh server remembers %d auth failures", len(got))
	}
	c := newRawClient(t, s.addrs[relay.UDP])
	before := time.Now()
	// More failures than the ring holds: a wrong password, then unknown users.
	c.pass = "not-the-password"
	wantCode(t, "wrong password", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), stun.CodeUnauthorized)
	for i := range relay.RecentAuthFailures + 5 {
		c.user = fmt.Sprintf("nobody-%02d", i)
		wantCode(t, "unknown user", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), stun.CodeUnauthorized)
	}
	// A long username whose 64-byte cut falls inside a 3-byte rune.
	long := strings.Repeat("a", 62) + "€€€"
	c.user = long
	wantCode(t, "long user", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), stun.CodeUnauthorized)
	// A success is not recorded.
	c.user, c.pass = testUser, testPassword
	c.allocate()

	got := s.RecentAuthFailures()
	if len(got) != relay.RecentAuthFailures {
		t.Fatalf("%d recent failures, want the ring's %d", len(got), relay.RecentAuthFailures)
	}
	first := got[0]
	if want := strings.Repeat("a", 62); first.Username != want {
		t.Errorf("long username kept as %q (%d bytes), want the first 62 bytes (the cut rune dropped)", first.Username, len(first.Username))
	}
	if first.Reason != "unknown_user" || first.Transport != "udp" || first.Client.String() != c.conn.LocalAddr().String() ||
		first.Time.Before(before) || first.Time.After(time.Now()) {
		t.Errorf("newest failure %+v, want unknown_user over udp from %s", first, c.conn.LocalAddr())
	}
	if want := fmt.Sprintf("nobody-%02d", relay.RecentAuthFailures+4); got[1].Username != want {
		t.Errorf("second newest failure is %q, want %q", got[1].Username, want)
	}
	// The oldest held is the 32nd newest: the wrong password and the first
	// unknown users fell out.
	if want := fmt.Sprintf("nobody-%02d", 6); got[len(got)-1].Username != want {
		t.Errorf("oldest failure held is %q, want %q", got[len(got)-1].Username, want)
	}
	for _, f := range got {
		if len(f.Username) > relay.MaxRecentUsername || !utf8.ValidString(f.Username) {
			t.Errorf("username %q: %d bytes, valid UTF-8 %v", f.Username, len(f.Username), utf8.ValidString(f.Username))
		}
	}
	if n := s.Stats().AuthFailures; n != relay.RecentAuthFailures+7 {
		t.Errorf("auth failure counter %d, want %d (the ring does not replace it)", n, relay.RecentAuthFailures+7)
	}
}

// TestRecentAuthFailureUsernames: invalid UTF-8 is replaced, a USERHASH
// is named as such, and the result never exceeds 64 bytes.
func TestRecentAuthFailureUsernames(t *testing.T) {
	s := startServer(t)
	c := newRawClient(t, s.addrs[relay.UDP])
	c.pass = "wrong"
	c.user = "bad\xffbyte" + strings.Repeat("\xfe", 70)
	wantCode(t, "invalid UTF-8 user", c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP)), stun.CodeUnauthorized)
	got := s.RecentAuthFailures()
	if len(got) != 1 {
		t.Fatalf("%d recent failures, want 1", len(got))
	}
	if u := got[0].Username; !utf8.ValidString(u) || len(u) > relay.MaxRecentUsername || !strings.HasPrefix(u, "bad\uFFFDbyte") {
		t.Errorf("username %q (%d bytes), want valid UTF-8 of at most 64 bytes starting bad\\uFFFDbyte", u, len(u))
	}
}

// TestCertificates: the accessor reports the self-signed certificate a
// server without tls.cert generates, then one set with SetCertificate.
func TestCertificates(t *testing.T) {
	s := startServer(t)
	certs := s.Certificates()
	if len(certs) != 1 {
		t.Fatalf("Certificates() = %+v, want the self-signed one", certs)
	}
	c := certs[0]
	if c.Source != relay.CertSourceSelfSigned || c.Issuer != "postern self-signed" ||
		c.NotAfter.Before(time.Now().Add(364*24*time.Hour)) || c.NotAfter.After(time.Now().Add(366*24*time.Hour)) {
		t.Errorf("self-signed certificate %+v, want one valid for a year", c)
	}
	if !strings.Contains(strings.Join(c.Names, " "), "localhost") {
		t.Errorf("names %v lack localhost", c.Names)
	}

	// A certificate signed by another key counts as configured.
	ca, err := relay.SelfSignedCertificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf := issuedBy(t, ca)
	s.SetCertificate(&leaf)
	certs = s.Certificates()
	if len(certs) != 1 || certs[0].Source != relay.CertSourceConfigured || !certs[0].NotAfter.Equal(leaf.Leaf.NotAfter) {
		t.Errorf("after SetCertificate: %+v, want the configured one expiring %v", certs, leaf.Leaf.NotAfter)
	}

	// A server without TLS has none.
	plain := startServer(t, func(c *relay.Config) {
		c.Listeners = []relay.ListenSpec{{Kind: relay.UDP, Addr: "127.0.0.1:0"}}
	})
	if got := plain.Certificates(); len(got) != 0 {
		t.Errorf("UDP-only server reports certificates %+v", got)
	}
}

// issuedBy returns a certificate for turn.example signed by ca's key,
// valid for 90 days, with its Leaf parsed.
func issuedBy(t *testing.T, ca tls.Certificate) tls.Certificate {
	t.Helper()
	caLeaf, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "turn.example"},
		DNSNames:     []string{"turn.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caLeaf, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
