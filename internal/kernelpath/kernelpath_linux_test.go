//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package kernelpath

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postern/postern/internal/turntest"
)

// openLo attaches the program to the loopback interface. Only root can:
// elsewhere the test is skipped, as root (CI) a failure is the test's.
func openLo(t *testing.T) *Path {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading eBPF programs needs root")
	}
	p, err := Open([]string{"lo"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func udp(t *testing.T) *net.UDPConn { return udpOn(t, "127.0.0.1") }

func addr(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func channelData(number uint16, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, number)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

// read returns the next datagram on c and its source, or fails after a
// second.
func read(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read on %v: %v", addr(c), err)
	}
	return buf[:n], from
}

// quiet fails if c receives anything within a short wait.
func quiet(t *testing.T, c *net.UDPConn, what string) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, from, err := c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("%s: %v got %d bytes from %v", what, addr(c), n, from)
	}
}

// ends are a binding's four sockets; remote is the host of the client and
// the peer, if not this one.
type ends struct {
	client, server, relay, peer *net.UDPConn
	remote                      *turntest.VethHost
}

func newEnds(t *testing.T) (ends, Binding) {
	e := ends{client: udp(t), server: udp(t), relay: udp(t), peer: udp(t)}
	return e, Binding{Client: addr(e.client), Server: addr(e.server), Relay: addr(e.relay), Peer: addr(e.peer), Channel: 0x4001}
}

// TestRelaysBothDirections, over IPv4 and IPv6 loopback: a bound channel's
// ChannelData leaves as the peer's datagram from the relayed address, the
// peer's datagram comes back as ChannelData from the server's address,
// counted; removed, both go up to the sockets.
func TestRelaysBothDirections(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "IPv4", true: "IPv6"}[v6], func(t *testing.T) {
			p, e, b := openRemote(t, v6)
			relaysBothDirections(t, p, e, b)
		})
	}
}

func relaysBothDirections(t *testing.T, p *Path, e ends, b Binding) {
	if err := p.Install(b, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	hello := bytes.Repeat([]byte("hello"), 240) // 1200 B, media-sized
	if _, err := e.client.WriteToUDPAddrPort(channelData(b.Channel, hello), b.Server); err != nil {
		t.Fatal(err)
	}
	got, from := read(t, e.peer)
	if !bytes.Equal(got, hello) || from != b.Relay {
		t.Fatalf("peer got %d bytes from %v, want %d from the relayed address %v", len(got), from, len(hello), b.Relay)
	}
	quiet(t, e.server, "ChannelData relayed in the kernel")

	if _, err := e.peer.WriteToUDPAddrPort([]byte("world"), b.Relay); err != nil {
		t.Fatal(err)
	}
	got, from = read(t, e.client)
	if want := channelData(b.Channel, []byte("world")); !bytes.Equal(got, want) || from != b.Server {
		t.Fatalf("client got %x from %v, want %x from the server %v", got, from, want, b.Server)
	}
	quiet(t, e.relay, "peer datagram relayed in the kernel")

	toPeer, toClient, err := p.Counts(b)
	if err != nil {
		t.Fatal(err)
	}
	if toPeer != (Count{1, uint64(len(hello))}) || toClient != (Count{1, 5}) {
		t.Fatalf("counts %+v %+v, want {1 %d} {1 5}", toPeer, toClient, len(hello))
	}
	if toPeer, toClient, err = p.Remove(b); err != nil || toPeer.Packets != 1 || toClient.Packets != 1 {
		t.Fatalf("Remove: %+v %+v %v", toPeer, toClient, err)
	}
	if p.Len() != 0 {
		t.Fatalf("%d bindings left", p.Len())
	}
	// Removed: both go up to the sockets again, unchanged.
	msg := channelData(b.Channel, []byte("again"))
	if _, err := e.client.WriteToUDPAddrPort(msg, b.Server); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, e.server); !bytes.Equal(got, msg) {
		t.Fatalf("server socket got %x, want %x", got, msg)
	}
	if _, err := e.peer.WriteToUDPAddrPort([]byte("again"), b.Relay); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, e.relay); string(got) != "again" {
		t.Fatalf("relay socket got %q", got)
	}
}

// What the program must leave to user space: another channel, padded or
// empty ChannelData, a binding past its expiry.
func TestLeavesTheRestToTheStack(t *testing.T) {
	p, e, b := openRemote(t, false)
	for _, msg := range [][]byte{
		channelData(0x4002, []byte("other channel")),
		append(channelData(b.Channel, []byte("pad")), 0), // padded to 4
		channelData(b.Channel, nil),
		{0x40, 0x01, 0x00},                               // short
		{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, // STUN
	} {
		if _, err := e.client.WriteToUDPAddrPort(msg, b.Server); err != nil {
			t.Fatal(err)
		}
		if got, _ := read(t, e.server); !bytes.Equal(got, msg) {
			t.Fatalf("server socket got %x, want %x unchanged", got, msg)
		}
	}
	// Another peer of the same relayed address.
	var other *net.UDPConn
	e.remote.Do(t, func() { other = udpOn(t, "10.254.1.2") })
	if _, err := other.WriteToUDPAddrPort([]byte("stranger"), b.Relay); err != nil {
		t.Fatal(err)
	}
	if got, from := read(t, e.relay); string(got) != "stranger" || from != addr(other) {
		t.Fatalf("relay socket got %q from %v", got, from)
	}
	quiet(t, e.peer, "nothing relayed")
	quiet(t, e.client, "nothing relayed")

	if err := p.Install(b, time.Now().Add(30*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	msg := channelData(b.Channel, []byte("late"))
	if _, err := e.client.WriteToUDPAddrPort(msg, b.Server); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, e.server); !bytes.Equal(got, msg) {
		t.Fatalf("expired binding: server socket got %x, want %x", got, msg)
	}
	quiet(t, e.peer, "expired binding")
	if toPeer, _, err := p.Counts(b); err != nil || toPeer.Packets != 0 {
		t.Fatalf("counts %+v %v, want nothing relayed", toPeer, err)
	}
}

// TestInstallRefusesMixedFamilies: a binding whose client side is IPv6 and
// peer side IPv4 (REQUESTED-ADDRESS-FAMILY) would need its IP header
// replaced; it stays in user space.
func TestInstallRefusesMixedFamilies(t *testing.T) {
	p := openLo(t)
	b := Binding{Client: netip.MustParseAddrPort("[::1]:1"), Server: netip.MustParseAddrPort("[::1]:2"),
		Relay: netip.MustParseAddrPort("127.0.0.1:3"), Peer: netip.MustParseAddrPort("127.0.0.1:4"), Channel: 0x4000}
	if err := p.Install(b, time.Now().Add(time.Minute)); err == nil || Supported(b) {
		t.Fatal("installed a binding of mixed families")
	}
	if p.Len() != 0 {
		t.Fatalf("%d bindings after a refused install", p.Len())
	}
}

// TestPagedDatagram: a sender with UDP_SEGMENT set builds datagrams whose
// payload is in pages from the first byte after the UDP header (so may a
// driver): the program pulls in the ChannelData header to read it.
func TestPagedDatagram(t *testing.T) {
	_, e, b := openRemote(t, false)
	hello := bytes.Repeat([]byte("paged"), 240)
	rc, err := e.client.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 4+len(hello))
	}); err != nil || serr != nil {
		t.Skipf("no UDP_SEGMENT: %v %v", err, serr)
	}
	for range 3 {
		if _, err := e.client.WriteToUDPAddrPort(channelData(b.Channel, hello), b.Server); err != nil {
			t.Fatal(err)
		}
		if got, from := read(t, e.peer); !bytes.Equal(got, hello) || from != b.Relay {
			t.Fatalf("peer got %d bytes from %v, want %d from %v", len(got), from, len(hello), b.Relay)
		}
	}
	quiet(t, e.server, "paged ChannelData relayed in the kernel")
}

// TestSegmentedSendsGoUp: a peer (or client) sending with UDP_SEGMENT
// hands the stack one buffer of several datagrams (GSO), which the
// program cannot rewrite as one: it leaves them to the relay's sockets,
// which receive them as the separate datagrams they are.
func TestSegmentedSendsGoUp(t *testing.T) {
	// Over loopback: a segmented send needs the device's checksum offload,
	// which loopback has. Its buffer is thus also partial (partial() in
	// the program), so this shows what a sender sees, not which of the
	// program's two checks sent it up.
	p := openLo(t)
	e, b := newEnds(t)
	if err := p.Install(b, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	const segment = 100
	for _, tc := range []struct {
		name     string
		from, to *net.UDPConn
		msg      []byte
	}{
		{"peer to relayed address", e.peer, e.relay, bytes.Repeat([]byte{0x11}, 3*segment)},
		{"client to server", e.client, e.server, bytes.Repeat(channelData(b.Channel, bytes.Repeat([]byte{0x22}, segment-4)), 3)},
	} {
		rc, err := tc.from.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, segment)
		}); err != nil || serr != nil {
			t.Skipf("no UDP_SEGMENT: %v %v", err, serr)
		}
		if _, err := tc.from.WriteToUDPAddrPort(tc.msg, addr(tc.to)); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if got, _ := read(t, tc.to); !bytes.Equal(got, tc.msg[i*segment:(i+1)*segment]) {
				t.Fatalf("%s: datagram %d is %d bytes %x..., want segment %d unchanged", tc.name, i, len(got), got[:min(len(got), 8)], i)
			}
		}
	}
	quiet(t, e.client, "segmented sends")
	quiet(t, e.peer, "segmented sends")
}

// TestPartialChecksumsGoUp: a datagram whose checksum its local sender
// left to the device (loopback with its offload on) goes up to the
// sockets unchanged: moving its headers would leave the device summing
// from the wrong place, writing the sum over the datagram.
func TestPartialChecksumsGoUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading eBPF programs needs root")
	}
	p, err := Open([]string{"lo"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	e, b := newEnds(t)
	if err := p.Install(b, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	msg := channelData(b.Channel, []byte("partial"))
	if _, err := e.client.WriteToUDPAddrPort(msg, b.Server); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, e.server); !bytes.Equal(got, msg) {
		t.Fatalf("server socket got %x, want the ChannelData unchanged", got)
	}
	if _, err := e.peer.WriteToUDPAddrPort([]byte("partial"), b.Relay); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, e.relay); string(got) != "partial" {
		t.Fatalf("relay socket got %q", got)
	}
	quiet(t, e.client, "partial checksums")
	quiet(t, e.peer, "partial checksums")
}
