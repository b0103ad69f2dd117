package relay_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// heapInUse is the live heap after a collection, and the goroutine
// stacks.
func heapInUse() (heap, stacks int64) {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse)
}

// bindingOver sends a Binding request on conn and reads the answer, so the
// server has routed the connection and waits on its next frame.
func bindingOver(t *testing.T, conn net.Conn) {
	t.Helper()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := conn.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 512)); err != nil {
		t.Fatalf("binding: %v", err)
	}
}

// TestIdleConnectionHeap measures the heap that idle TCP and TLS
// connections hold, server and test client together: each is accepted,
// sniffed, served a Binding and then waits. A connection used to hold 64
// KiB of stream buffer from accept on, and TLS a second after the
// handshake; now a small buffer, grown only for a frame that needs it.
// README's "Security and abuse limits" quotes the figures.
func TestIdleConnectionHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1000 connections")
	}
	const conns = 500
	s := startServer(t)
	for _, tc := range []struct {
		name  string
		addr  string
		bound int64 // bytes per connection, both ends
	}{
		{"tcp", s.addrs[relay.TCP], 8 << 10},
		{"tls", s.addrs[relay.TLS], 24 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dial := func() net.Conn {
				c, err := net.DialTimeout("tcp", tc.addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "tls" {
					tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test server
					if err := tc.Handshake(); err != nil {
						t.Fatal(err)
					}
					return tc
				}
				return c
			}
			bindingOver(t, dial()) // warm up what is made once
			before, stacksBefore := heapInUse()
			open := make([]net.Conn, 0, conns)
			defer func() {
				for _, c := range open {
					_ = c.Close()
				}
			}()
			for range conns {
				c := dial()
				bindingOver(t, c)
				open = append(open, c)
			}
			time.Sleep(50 * time.Millisecond)
			heap, stacks := heapInUse()
			per := (heap - before) / conns
			t.Logf("%s: %d idle connections hold %d bytes of heap each (server and client), and %d of goroutine stacks",
				tc.name, conns, per, (stacks-stacksBefore)/conns)
			if per > tc.bound {
				t.Errorf("%s: %d bytes of heap per idle connection, bound %d", tc.name, per, tc.bound)
			}
			runtime.KeepAlive(open)
		})
	}
}

// TestLargeFrameAfterGrowth: over TCP and TLS, a 65 000-byte ChannelData
// message, far larger than a connection's initial buffer, is relayed whole
// both ways once the connection has allocated; before it has, a frame
// that large closes the connection.
func TestLargeFrameAfterGrowth(t *testing.T) {
	s := startServer(t)
	for _, tc := range []struct {
		name string
		dial func() net.Conn
	}{
		{"tcp", func() net.Conn { return dialTCP(t, s.addrs[relay.TCP]) }},
		{"tls", func() net.Conn { return turntest.DialTLS(t, s.addrs[relay.TLS]) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 65000
			frame := make([]byte, 4+proto.PaddedLen(size))
			proto.PutChannelDataHeader(frame, 0x4001, size)
			for i := range size {
				frame[4+i] = byte(i * 7)
			}
			payload := frame[4 : 4+size]

			// Before allocating: closed, not buffered.
			early := tc.dial()
			_, _ = early.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest, rawAttr{stun.AttrSoftware, make([]byte, 8000)}).Raw)
			_ = early.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := early.Read(make([]byte, 64)); err == nil || isTimeout(err) {
				t.Errorf("an 8 KB request before any allocation was not refused by closing (%v)", err)
			}

			c := &rawClient{t: t, conn: tc.dial(), user: testUser, pass: testPassword}
			relayed := c.allocate()
			peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			wantCode(t, "ChannelBind", c.authed(stun.MethodChannelBind, proto.ChannelNumber(0x4001), stunPeer(peerAP)), 0)
			if _, err := c.conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 70000)
			_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil || !bytes.Equal(buf[:n], payload) {
				t.Fatalf("peer got %d bytes (%v), want the %d-byte payload", n, err, size)
			}
			if _, err := peer.WriteToUDPAddrPort(payload, relayed); err != nil {
				t.Fatal(err)
			}
			_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.ReadFull(c.conn, buf[:len(frame)]); err != nil {
				t.Fatalf("reading the relayed frame: %v", err)
			}
			if number, got, err := proto.ParseChannelData(buf[:4+size]); err != nil || number != 0x4001 || !bytes.Equal(got, payload) {
				t.Fatalf("client got channel %#x, %d bytes (%v), want the %d-byte payload on 0x4001", number, len(got), err, size)
			}
		})
	}
}
