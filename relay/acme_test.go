package relay

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
	"github.com/pion/turn/v5"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
)

// acmeTestDomain is the name the test certificates are for; the test's
// own DNS server resolves every name to 127.0.0.1.
const acmeTestDomain = "turn.postern.test"

// loopbackDNS answers A queries for any name with 127.0.0.1 (and AAAA
// with nothing), so Pebble's validation authority finds our listener.
func loopbackDNS(t *testing.T) string {
	t.Helper()
	// Pebble asks over TCP.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		for _, q := range req.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// pebble is an in-process Pebble ACME CA whose validation authority
// connects to tlsPort on loopback for TLS-ALPN-01.
type pebble struct {
	directory string         // ACME directory URL
	apiRoots  *x509.CertPool // trusts the ACME API's HTTPS certificate
	certRoots *x509.CertPool // trusts the certificates Pebble issues
}

func startPebble(t *testing.T, tlsPort int, validity time.Duration) *pebble {
	t.Helper()
	// Validate at once (no random sleep) and never fake a bad nonce.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(os.Stderr, "pebble ", log.Ltime)
	}
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: uint64(validity / time.Second)},
	})
	validator := va.New(logger, 0, tlsPort, false, loopbackDNS(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(srv.Close)

	p := &pebble{directory: srv.URL + wfe.DirectoryPath, apiRoots: x509.NewCertPool(), certRoots: x509.NewCertPool()}
	p.apiRoots.AddCert(srv.Certificate())
	p.certRoots.AddCert(authority.GetRootCert(0).Cert)
	return p
}

// freeTCPPort reserves a loopback TCP port and frees it for the server.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestACMEPebble obtains a certificate from Pebble over TLS-ALPN-01
// answered on the server's own tcp+tls listener, serves it to TURN/TLS
// clients (with and without SNI), renews it in the background, and swaps
// it in without dropping a session made under the old one.
func TestACMEPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("ACME end to end takes several seconds")
	}
	port := freeTCPPort(t)
	// Certificates valid 8 s, renewed in the second half of their life:
	// the first renewal comes about 4 s after issuance.
	pb := startPebble(t, port, 8*time.Second)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	a, err := auth.New(auth.Config{Realm: "acme.test", Users: map[string]string{"u": "p"}})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	storage := t.TempDir()
	s, err := New(Config{
		Listeners:         []ListenSpec{{Kind: TCPTLS, Addr: addr}},
		ListenersExplicit: true,
		Auth:              a,
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		Logger:            logger,
		ACME: &ACMEConfig{
			Domains: []string{acmeTestDomain},
			CA:      pb.directory,
			Email:   "ops@postern.test",
			Storage: storage,
			RootCAs: pb.apiRoots,

			renewCheckInterval: 250 * time.Millisecond,
			renewalWindowRatio: 0.5,
			disableARI:         true,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	turntest.Start(t, s)

	// The first certificate: poll until a verifying handshake succeeds.
	verified := func(serverName string) (*tls.Conn, error) {
		d := &net.Dialer{Timeout: 2 * time.Second}
		return tls.DialWithDialer(d, "tcp", addr, &tls.Config{
			ServerName: serverName, RootCAs: pb.certRoots,
			// Without SNI the certificate is still checked for the name.
			VerifyConnection: func(cs tls.ConnectionState) error {
				return cs.PeerCertificates[0].VerifyHostname(acmeTestDomain)
			},
			InsecureSkipVerify: serverName == "", //nolint:gosec // verified in VerifyConnection and below
		})
	}
	var first *tls.Conn
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := verified(acmeTestDomain)
		if err == nil {
			first = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no verifiable ACME certificate after 30 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer first.Close()
	firstCert := first.ConnectionState().PeerCertificates[0]
	t.Logf("issued: serial %s, valid %s to %s", firstCert.SerialNumber, firstCert.NotBefore.Format(time.TimeOnly), firstCert.NotAfter.Format(time.TimeOnly))

	// TURN over the connection that verified.
	client := newACMETestClient(t, first, addr)
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate over TLS with the ACME certificate: %v", err)
	}
	defer relayConn.Close()

	// A client that sends no SNI (it dialled the address) gets the same
	// certificate: DefaultServerName.
	noSNI, err := verified("")
	if err != nil {
		t.Fatalf("handshake without SNI: %v", err)
	}
	if got := noSNI.ConnectionState().PeerCertificates[0]; !got.Equal(firstCert) {
		t.Errorf("without SNI: certificate for %v, want the ACME one", got.DNSNames)
	}
	_ = noSNI.Close()

	// The account and the certificate are kept in storage.
	var stored int
	_ = filepath.WalkDir(storage, func(path string, d os.DirEntry, err error) error {
		if err == nil && filepath.Ext(path) == ".crt" {
			stored++
		}
		return nil
	})
	if stored == 0 {
		t.Errorf("no certificate under the storage directory %s", storage)
	}

	// Renewal in the background, hot-swapped: a new handshake gets a new
	// certificate.
	deadline = time.Now().Add(25 * time.Second)
	var renewed *x509.Certificate
	for renewed == nil {
		if time.Now().After(deadline) {
			t.Fatal("the certificate was not renewed within 25 s")
		}
		time.Sleep(200 * time.Millisecond)
		c, err := verified(acmeTestDomain)
		if err != nil {
			continue
		}
		if leaf := c.ConnectionState().PeerCertificates[0]; !leaf.Equal(firstCert) {
			renewed = leaf
		}
		_ = c.Close()
	}
	t.Logf("renewed: serial %s, valid %s to %s", renewed.SerialNumber, renewed.NotBefore.Format(time.TimeOnly), renewed.NotAfter.Format(time.TimeOnly))

	// The session made under the old certificate was not dropped.
	if _, err := client.SendBindingRequest(); err != nil {
		t.Errorf("the session from before the renewal: %v", err)
	}
	if s.Table().Len() != 1 {
		t.Errorf("%d allocations after the renewal, want the 1 from before", s.Table().Len())
	}
}

func newACMETestClient(t *testing.T, c net.Conn, addr string) *turn.Client {
	t.Helper()
	return turntest.Client(t, turn.NewSTUNConn(c), addr, turn.ClientConfig{Username: "u", Password: "p", Realm: "acme.test"})
}
