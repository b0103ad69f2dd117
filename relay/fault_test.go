package relay_test

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd on this system")
	}
	return len(entries)
}

// serverGoroutines counts the goroutines running server code (not the
// test's own clients, whose timers are pion's business).
func serverGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	all := string(buf[:runtime.Stack(buf, true)])
	n := 0
	var server []string
	for _, g := range strings.Split(all, "\n\n") {
		if strings.Contains(g, "postern/postern/relay.") || strings.Contains(g, "postern/postern/allocations.") {
			n++
			server = append(server, g)
		}
	}
	return n, strings.Join(server, "\n\n")
}

// settle waits until the server's goroutines and the process's descriptors
// return to at most the baseline, or fails.
func settle(t *testing.T, goroutines, fds int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, stacks := serverGoroutines()
		f := openFDs(t)
		if g <= goroutines && f <= fds {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leak: %d server goroutines (baseline %d), %d fds (baseline %d)\n%s",
				g, goroutines, f, fds, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFaultsFreeEverything: clients that vanish mid-allocation, TCP
// connections cut inside a frame, and stalled TLS handshakes all end with
// the server's goroutines and sockets back at their baseline, while a
// well-behaved client keeps being served.
func TestFaultsFreeEverything(t *testing.T) {
	s := startServer(t, func(c *relay.Config) {
		c.DefaultLifetime, c.MaxLifetime = time.Second, time.Second
		c.HandshakeTimeout = 500 * time.Millisecond
	})
	time.Sleep(50 * time.Millisecond) // let the listeners' goroutines start
	baseGoroutines, _ := serverGoroutines()
	baseFDs := openFDs(t)

	// 1. UDP clients that allocate, bind a channel and vanish: their
	// allocations expire and their relay sockets close. (The peer is not
	// on 127.0.0.1: port 9 of the server's own address is refused.)
	for range 5 {
		c := newRawClient(t, s.addrs[relay.UDP])
		resp := c.authed(stun.MethodAllocate, proto.RequestedTransport(proto.ProtoUDP))
		wantCode(t, "Allocate", resp, 0)
		wantCode(t, "ChannelBind", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4000),
			stunPeer(netip.MustParseAddrPort("127.0.0.2:9"))), 0)
		_ = c.conn.Close()
	}
	// 2. TCP clients that allocate and then close half-way through a frame.
	for range 5 {
		conn, err := net.Dial("tcp", s.addrs[relay.TCP])
		if err != nil {
			t.Fatal(err)
		}
		client := newClient(t, turn.NewSTUNConn(conn), s.addrs[relay.TCP], testUser, testPassword)
		if _, err := client.Allocate(); err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte{0x40, 0x00, 0x04, 0x00, 'h', 'a'}) // 1024-byte ChannelData, 2 bytes sent
		_ = conn.Close()
		client.Close()
	}
	// 3. Slow-loris TLS: connect, send a byte of a handshake, stall.
	for range 5 {
		c, err := net.Dial("tcp", s.addrs[relay.TLS])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte{0x16})
	}
	// 4. Meanwhile a good TLS client still gets through.
	goodConn := clientConn(t, relay.TLS, s.addrs[relay.TLS], true)
	good := newClient(t, goodConn, s.addrs[relay.TLS], testUser, testPassword)
	if _, err := good.SendBindingRequest(); err != nil {
		t.Fatalf("a well-behaved client was not served: %v", err)
	}
	good.Close()
	_ = goodConn.Close()

	// The stalled handshakes are cut by the server after HandshakeTimeout,
	// the UDP allocations expire, and the TCP ones ended with their
	// connections: back to baseline.
	deadline := time.Now().Add(5 * time.Second)
	for s.Table().Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d allocations never went away", s.Table().Len())
		}
		time.Sleep(20 * time.Millisecond)
	}
	settle(t, baseGoroutines, baseFDs+5) // +5: our own ends of the stalled connections, closed at return
}
