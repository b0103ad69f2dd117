//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package kernelpath

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/postern/postern/internal/turntest"
)

// run runs a command of the test's network set-up.
func run(t *testing.T, args ...string) { t.Helper(); turntest.Run(t, args...) }

// remoteHost makes another host for the test: turntest.VethHost on
// 10.254.1.0/24 and fd54:1::/64, whose sends carry computed checksums as
// a network card's datagrams do.
func remoteHost(t *testing.T) *turntest.VethHost {
	t.Helper()
	return turntest.NewVethHost(t, 1)
}

// openRemote is the program attached to a remoteHost's veth pair, with a
// binding installed whose client and peer are in its namespace (IPv6
// addresses with v6).
func openRemote(t *testing.T, v6 bool) (*Path, ends, Binding) {
	t.Helper()
	h := remoteHost(t)
	p, err := Open([]string{h.Host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	e, b := remoteEnds(t, p, h, v6)
	return p, e, b
}

// remoteEnds are the server's and relay's sockets here and the client's
// and peer's on h, and their binding, installed in p.
func remoteEnds(t *testing.T, p *Path, h *turntest.VethHost, v6 bool) (ends, Binding) {
	t.Helper()
	here, there := "10.254.1.1", "10.254.1.2"
	if v6 {
		here, there = "fd54:1::1", "fd54:1::2"
	}
	e := ends{remote: h}
	e.server, e.relay = udpOn(t, here), udpOn(t, here)
	h.Do(t, func() { e.client, e.peer = udpOn(t, there), udpOn(t, there) })
	b := Binding{Client: addr(e.client), Server: addr(e.server), Relay: addr(e.relay), Peer: addr(e.peer), Channel: 0x4001}

	// The relay's first datagram to the peer, sent by user space, teaches
	// the kernel the peer's link address.
	if _, err := e.relay.WriteToUDPAddrPort([]byte("first"), b.Peer); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, e.peer); string(got) != "first" {
		t.Fatalf("peer got %q", got)
	}
	if err := p.Install(b, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return e, b
}

// TestAttachesNewInterfaces: opened for every interface, the path
// attaches to one that comes up later (AttachNew) and relays over it, and
// lets go of it when it is gone.
func TestAttachesNewInterfaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("eBPF needs root")
	}
	p, err := Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	h := remoteHost(t)
	host := h.Host
	if slices.Contains(p.Interfaces(), host) {
		t.Fatalf("attached to %s before it existed", host)
	}
	names, err := p.AttachNew()
	if err != nil || !slices.Contains(names, host) || !slices.Contains(p.Interfaces(), host) {
		t.Fatalf("AttachNew: %v, %v; attached to %v; want %s among them", names, err, p.Interfaces(), host)
	}
	if again, err := p.AttachNew(); err != nil || len(again) != 0 {
		t.Fatalf("a second AttachNew attached %v (%v), want none", again, err)
	}
	e, b := remoteEnds(t, p, h, false)
	if _, err := e.client.WriteToUDPAddrPort(channelData(b.Channel, []byte("new")), b.Server); err != nil {
		t.Fatal(err)
	}
	if got, from := read(t, e.peer); string(got) != "new" || from != b.Relay {
		t.Fatalf("peer got %q from %v", got, from)
	}
	quiet(t, e.server, "relayed in the kernel over the new interface")

	run(t, "ip", "link", "del", host)
	if _, err := p.AttachNew(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(p.Interfaces(), host) {
		t.Fatalf("still attached to the deleted %s", host)
	}
}

func udpOn(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRemoteEnds: the client and the peer on another host (a network
// namespace of the test's own behind a veth pair): the program sends the
// rewritten datagram out of the interface the routing table names, to the
// next hop's link address, looked up by the program where the interface
// forwards and else left to the neighbour table; a datagram that would
// not fit the link is left to the relay's sockets.
func TestRemoteEnds(t *testing.T) {
	h := remoteHost(t)
	host := h.Host
	p, err := Open([]string{host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	e, b := remoteEnds(t, p, h, false)
	payload := bytes.Repeat([]byte{0x5a}, 1200)
	// With forwarding, by the route lookup's interface and next hop; without,
	// by the interface of user space's route and the neighbour table.
	for _, forwarding := range []string{"1", "0"} {
		run(t, "sysctl", "-qw", "net.ipv4.conf."+host+".forwarding="+forwarding)
		for range 3 {
			if _, err := e.client.WriteToUDPAddrPort(channelData(b.Channel, payload), b.Server); err != nil {
				t.Fatal(err)
			}
			if got, from := read(t, e.peer); !bytes.Equal(got, payload) || from != b.Relay {
				t.Fatalf("forwarding=%s: peer got %d bytes from %v, want %d from %v", forwarding, len(got), from, len(payload), b.Relay)
			}
			if _, err := e.peer.WriteToUDPAddrPort([]byte("back"), b.Relay); err != nil {
				t.Fatal(err)
			}
			if got, from := read(t, e.client); !bytes.Equal(got, channelData(b.Channel, []byte("back"))) || from != b.Server {
				t.Fatalf("forwarding=%s: client got %x from %v", forwarding, got, from)
			}
		}
		quiet(t, e.server, "relayed in the kernel, forwarding="+forwarding)
		quiet(t, e.relay, "relayed in the kernel, forwarding="+forwarding)
	}
	if toPeer, toClient, err := p.Counts(b); err != nil || toPeer.Packets != 6 || toClient.Packets != 6 {
		t.Fatalf("counts %+v %+v %v, want 6 each way", toPeer, toClient, err)
	}

	// A peer's datagram that fits the link but whose ChannelData (4 bytes
	// more) would not is left to the relay's socket, either way.
	const mtu = 20 + 8 + 1200 + 2
	run(t, "ip", "link", "set", host, "mtu", fmt.Sprint(mtu))
	run(t, "ip", "-n", h.NS, "link", "set", h.Guest, "mtu", fmt.Sprint(mtu))
	for _, forwarding := range []string{"1", "0"} {
		run(t, "sysctl", "-qw", "net.ipv4.conf."+host+".forwarding="+forwarding)
		if _, err := e.peer.WriteToUDPAddrPort(payload, b.Relay); err != nil {
			t.Fatal(err)
		}
		if got, from := read(t, e.relay); !bytes.Equal(got, payload) || from != b.Peer {
			t.Fatalf("over the MTU, forwarding=%s: relay socket got %d bytes from %v, want the datagram unchanged", forwarding, len(got), from)
		}
		quiet(t, e.client, "over the MTU, forwarding="+forwarding)
	}
}

// TestLocalPeer: a remote client's ChannelData to a peer on this host is
// left to the relay's sockets, with forwarding on and off (the datagram
// from the relayed address would arrive with a source of this host's, a
// martian), and so is the local peer's answer (its checksum left to the
// device).
func TestLocalPeer(t *testing.T) {
	h := remoteHost(t)
	host := h.Host
	p, err := Open([]string{host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	e := ends{remote: h, server: udpOn(t, "10.254.1.1"), relay: udpOn(t, "10.254.1.1"), peer: udpOn(t, "10.254.1.1")}
	h.Do(t, func() { e.client = udpOn(t, "10.254.1.2") })
	b := Binding{Client: addr(e.client), Server: addr(e.server), Relay: addr(e.relay), Peer: addr(e.peer), Channel: 0x4001}
	if err := p.Install(b, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	msg := channelData(b.Channel, bytes.Repeat([]byte{0x77}, 1200))
	for _, forwarding := range []string{"1", "0"} {
		run(t, "sysctl", "-qw", "net.ipv4.conf."+host+".forwarding="+forwarding)
		if _, err := e.client.WriteToUDPAddrPort(msg, b.Server); err != nil {
			t.Fatal(err)
		}
		if got, _ := read(t, e.server); !bytes.Equal(got, msg) {
			t.Fatalf("forwarding=%s: server socket got %d bytes, want the ChannelData unchanged", forwarding, len(got))
		}
		quiet(t, e.peer, "forwarding="+forwarding)
	}
	if _, err := e.peer.WriteToUDPAddrPort([]byte("local"), b.Relay); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, e.relay); string(got) != "local" {
		t.Fatalf("relay socket got %q, want the local peer's datagram", got)
	}
	if toPeer, toClient, err := p.Counts(b); err != nil || toPeer.Packets != 0 || toClient.Packets != 0 {
		t.Fatalf("counts %+v %+v %v, want nothing relayed in the kernel", toPeer, toClient, err)
	}
}
