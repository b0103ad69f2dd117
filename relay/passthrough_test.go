package relay_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

// holdingBackend is a web backend that reads whatever it gets and never
// answers: a backend waiting for the rest of a request. closed receives
// once per connection when the relay closes it (the read sees EOF).
type holdingBackend struct {
	addr   string
	conns  atomic.Int32
	closed chan struct{}
}

func startHoldingBackend(t *testing.T, answer func(net.Conn)) *holdingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	b := &holdingBackend{addr: ln.Addr().String(), closed: make(chan struct{}, 64)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // never outlive the test
				if answer != nil {
					answer(c)
				}
				if _, err := io.Copy(io.Discard, c); err == nil {
					b.closed <- struct{}{}
				}
			}()
		}
	}()
	return b
}

// waitClosed waits up to d for the backend to see one connection closed.
func (b *holdingBackend) waitClosed(t *testing.T, d time.Duration, what string) {
	t.Helper()
	select {
	case <-b.closed:
	case <-time.After(d):
		t.Fatalf("%s: the relay did not close the backend connection within %v", what, d)
	}
}

// partialRequest connects to the shared port and sends the start of an
// HTTP request, which sends it to the web backend.
func partialRequest(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := dialTCP(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedWithin reports whether the relay closes c (a read ends without a
// timeout) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil || !isTimeout(err)
}

// TestPassthroughIdleTimeout: a client that sends the start of a request
// to the web backend and nothing more is closed after the idle timeout,
// both ways; one that keeps sending is not.
func TestPassthroughIdleTimeout(t *testing.T) {
	backend := startHoldingBackend(t, nil)
	s := startServer(t, withWeb(relay.WebConfig{Backend: backend.addr, IdleTimeout: 300 * time.Millisecond}))
	addr := s.addrs[relay.TCPTLS]

	silent := partialRequest(t, addr)
	if !closedWithin(silent, 3*time.Second) {
		t.Fatal("a silent web client was not closed within 3 s with a 300 ms idle timeout")
	}
	backend.waitClosed(t, 2*time.Second, "silent client")

	// Traffic renews the deadline: a header line every 100 ms for 1.2 s.
	busy := partialRequest(t, addr)
	for i := range 12 {
		time.Sleep(100 * time.Millisecond)
		if _, err := io.WriteString(busy, "X-Keep: "+strings.Repeat("a", i)+"\r\n"); err != nil {
			t.Fatalf("a client sending every 100 ms was closed after %d lines: %v", i, err)
		}
	}
	if closedWithin(busy, 100*time.Millisecond) {
		t.Fatal("a client sending every 100 ms was closed")
	}
}

// TestPassthroughLinger: when the backend finishes (answers and
// half-closes), the client gets the answer and EOF, and a client that does
// not close its side is closed after a short linger, so neither side keeps
// the slot.
func TestPassthroughLinger(t *testing.T) {
	backend := startHoldingBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := br.ReadString('\n'); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		_ = c.(*net.TCPConn).CloseWrite()
	})
	s := startServer(t, withWeb(relay.WebConfig{Backend: backend.addr, IdleTimeout: 500 * time.Millisecond}))
	c := partialRequest(t, s.addrs[relay.TCPTLS])
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	got, err := io.ReadAll(c) // up to the relay's half-close
	if err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Fatalf("client got %q (%v), want the backend's answer and EOF", got, err)
	}
	// The client neither sends nor closes: after the linger the relay
	// closes the backend side (and the client's) all the same.
	backend.waitClosed(t, 3*time.Second, "client that never closes")
}

// TestPassthroughCap: forwarded connections count against web.max_conns,
// not max_conns: past the web cap a new web connection is closed at once,
// and web connections never lock TURN clients out.
func TestPassthroughCap(t *testing.T) {
	backend := startHoldingBackend(t, nil)
	s := startServer(t, withWeb(relay.WebConfig{Backend: backend.addr, MaxConns: 2}),
		func(c *relay.Config) { c.MaxConns = 3 })
	addr := s.addrs[relay.TCPTLS]
	for range 2 {
		partialRequest(t, addr)
	}
	deadline := time.Now().Add(2 * time.Second)
	for backend.conns.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the backend did not get the two web connections")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if third := partialRequest(t, addr); !closedWithin(third, 2*time.Second) {
		t.Error("a third web connection was not closed with web max_conns 2")
	}
	// The refused connection's max_conns slot is given back just after the
	// close the client saw (a TURN dial raced it once in 200 runs).
	turntest.WaitFor(t, "the refused web connection's max_conns slot freed", func() bool { return s.ClientConns() == 0 })
	// Three TURN connections fit beside the two web ones.
	for i := range 3 {
		c := dialTCP(t, s.addrs[relay.TCP])
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := c.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 512)); err != nil {
			t.Fatalf("TURN connection %d beside two web connections was not served (max_conns 3): %v", i+1, err)
		}
	}
	if n := backend.conns.Load(); n != 2 {
		t.Errorf("the backend got %d connections, want 2", n)
	}
}
