// Package turntest holds helpers for tests that talk TURN on loopback;
// imported only from _test.go files.
//
// Every helper takes a testing.TB, fails the test on a setup error, closes
// what it opens when the test ends, and waits a bounded time at most.
package turntest

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// StopTimeout is how long the cleanup of Start waits for a server to stop.
const StopTimeout = 10 * time.Second

// Server is a server that runs until the context it was started with is
// cancelled, such as *relay.Server.
type Server interface {
	Start(ctx context.Context) error
	Wait() error
}

// Start starts s with a context that is cancelled when the test ends; the
// cleanup then waits up to StopTimeout for s to stop and reports an error
// if it does not.
func Start(t testing.TB, s Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { _ = s.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(StopTimeout):
			t.Errorf("server did not stop within %v", StopTimeout)
		}
	})
}

// ListenUDP opens a UDP socket on 127.0.0.1 at a free port, closed when the
// test ends.
func ListenUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// PeerIP is where ListenPeer and EchoPeer bind: a loopback address other
// than 127.0.0.1, where test servers listen. A TURN server relays to its
// own addresses only at its relay ports (relay/self.go), so a peer on
// 127.0.0.1 at an arbitrary port would be refused.
const PeerIP = "127.0.0.2"

// ListenPeer opens a UDP socket on PeerIP at a free port, closed when the
// test ends: a peer for relayed data.
func ListenPeer(t testing.TB) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(PeerIP)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// EchoPeer is a UDP peer on PeerIP that sends every datagram it receives
// back to its sender, until the test ends.
func EchoPeer(t testing.TB) *net.UDPConn {
	t.Helper()
	return Echo(ListenPeer(t))
}

// Echo makes pc send every datagram it receives back to its sender until
// pc is closed, and returns it.
func Echo(pc *net.UDPConn) *net.UDPConn {
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDP(buf[:n], from)
		}
	}()
	return pc
}

// DialTLS dials a TLS server at addr without verifying its certificate
// (test servers use self-signed ones), within 5 s; the connection is
// closed when the test ends.
func DialTLS(t testing.TB, addr string) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test server
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Client returns a listening pion TURN client of the STUN/TURN server at
// addr that talks over conn (a UDP socket, or turn.NewSTUNConn of a
// stream); cfg gives the rest (credentials, realm, logger, RTO), its server
// addresses and Conn are set here. The client is closed when the test ends.
func Client(t testing.TB, conn net.PacketConn, addr string, cfg turn.ClientConfig) *turn.Client {
	t.Helper()
	cfg.STUNServerAddr, cfg.TURNServerAddr, cfg.Conn = addr, addr, conn
	c, err := turn.NewClient(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	return c
}

// FreePort returns a port on 127.0.0.1 that is free for both TCP and UDP
// at the time of the call, for a server that listens on the same number
// for both. The port is released before returning, so another process
// could take it; the window is small.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return port
		}
	}
	t.Fatal("free port: no port free for both TCP and UDP after 50 tries")
	return 0
}

// WaitFor polls cond every 10 ms and fails the test when it does not hold
// within 5 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer safe for a server's goroutines (or a child
// process) to write while the test reads. The zero value is ready to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what has been written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
