package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/relay"
)

// writeCertPair writes a fresh self-signed certificate and key as PEM to
// cert and key (through a rename, as renewal tools do) and returns its
// serial number.
func writeCertPair(t *testing.T, cert, key string) *big.Int {
	t.Helper()
	c, err := relay.SelfSignedCertificate()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, typ string, b []byte) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(key, "EC PRIVATE KEY", der)
	write(cert, "CERTIFICATE", c.Certificate[0])
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber
}

// servedSerial returns the serial number of the certificate a new TLS
// handshake with addr presents.
func servedSerial(t *testing.T, addr string) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test inspects the certificate itself
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// boundAddr returns the address of the kind:// listener from the logs.
func boundAddr(t *testing.T, p *inProcess, kind string) string {
	t.Helper()
	for line := range strings.Lines(p.logs.String()) {
		if strings.Contains(line, `"msg":"listening"`) && strings.Contains(line, `"`+kind+"://") {
			_, rest, _ := strings.Cut(line, kind+"://")
			addr, _, _ := strings.Cut(rest, `"`)
			return addr
		}
	}
	t.Fatalf("no %s listener in the logs:\n%s", kind, p.logs)
	return ""
}

const certReloadConfig = `
listen = ["udp://127.0.0.1:0", "tls://127.0.0.1:0"]
realm = "reload.test"
[auth]
secrets = [%q]
[relay]
allow_peers = ["127.0.0.0/8"]
[tls]
cert = %q
key = %q
[credentials_api]
listen = "127.0.0.1:0"
api_keys = ["reload-test-api-key"]
`

// TestReloadUnderLoad: a stream relayed through an allocation loses nothing
// across a SIGHUP-style reload that rotates the certificate and the
// secrets; afterwards new handshakes get the new certificate, and only
// credentials of the new secret allocate.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	cert, key, conf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "postern.toml")
	oldSerial := writeCertPair(t, cert, key)
	writeConf := func(secret string) {
		if err := os.WriteFile(conf, fmt.Appendf(nil, certReloadConfig, secret, cert, key), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConf("old-secret")
	p := startInProcess(t, conf)
	udpAddr, tlsAddr := boundAddr(t, p, "udp"), boundAddr(t, p, "tls")
	if got := servedSerial(t, tlsAddr); got.Cmp(oldSerial) != 0 {
		t.Fatalf("served serial %v, want %v", got, oldSerial)
	}

	user, pass := auth.MintREST("old-secret", "streamer", time.Hour, time.Now())
	a := mustAllocate(t, udpAddr, user, pass)
	a.exchange(t, "warm-up") // permission and channel in place

	// Stream 600 numbered packets at one per 2 ms; the reload happens in
	// the middle.
	var received atomic.Int64
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := a.peer.ReadFrom(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	_ = a.peer.SetDeadline(time.Time{})
	const packets = 600
	newSerial := new(big.Int)
	for i := range packets {
		if i == packets/2 {
			newSerial = writeCertPair(t, cert, key)
			writeConf("new-secret")
			if err := p.reload(t); err != nil {
				t.Fatalf("reload: %v", err)
			}
			// At once, before the file watcher's quiet period could
			// have reloaded it: this is the reload's doing.
			if got := servedSerial(t, tlsAddr); got.Cmp(newSerial) != 0 {
				t.Fatalf("after the reload the served serial is %v, want the new %v", got, newSerial)
			}
		}
		if _, err := a.relayed.WriteTo(fmt.Appendf(nil, "packet %d", i), a.peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	deadline := time.Now().Add(2 * time.Second)
	for received.Load() < packets && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := received.Load(); got != packets {
		t.Fatalf("peer received %d of %d packets across the reload", got, packets)
	}

	if _, err := allocate(t, udpAddr, user, pass); err == nil {
		t.Error("a credential of the removed secret still allocates")
	}
	user2, pass2 := auth.MintREST("new-secret", "streamer", time.Hour, time.Now())
	mustAllocate(t, udpAddr, user2, pass2)
}

// TestCertificateFileWatch: a renewal that rewrites the certificate files is
// served from the next handshake on, without a SIGHUP.
func TestCertificateFileWatch(t *testing.T) {
	dir := t.TempDir()
	cert, key, conf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "postern.toml")
	writeCertPair(t, cert, key)
	if err := os.WriteFile(conf, fmt.Appendf(nil, certReloadConfig, "s", cert, key), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startInProcess(t, conf)
	tlsAddr := boundAddr(t, p, "tls")
	renewed := writeCertPair(t, cert, key)
	deadline := time.Now().Add(5 * time.Second)
	for servedSerial(t, tlsAddr).Cmp(renewed) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate files were not picked up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.waitLog(t, "certificate reloaded")

	// The credentials API's HTTPS serves the renewed certificate too.
	url := logField(t, p.logs.String(), "credentials API listening", "url")
	apiAddr := strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/v1/ice-servers")
	if got := servedSerial(t, apiAddr); got.Cmp(renewed) != 0 {
		t.Fatalf("credentials API serves serial %v, want the renewed %v", got, renewed)
	}
}
