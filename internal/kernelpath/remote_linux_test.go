//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package kernelpath

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// run runs a command of the test's network set-up.
func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// inNetns runs fn on a thread in network namespace ns: the sockets it
// opens belong there.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // the thread is in the wrong namespace: do not let it go back to the pool
		}
	}()
	fn()
}

// remoteHost makes another host for the test: a network namespace ns
// (10.254.1.2 on guest) behind a veth pair whose end here is host
// (10.254.1.1). It skips the test where that cannot be done.
func remoteHost(t *testing.T) (ns, host, guest string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces and eBPF need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip (Debian package iproute2)")
	}
	ns, host, guest = fmt.Sprintf("kptest%d", os.Getpid()), fmt.Sprintf("kpa%d", os.Getpid()), fmt.Sprintf("kpb%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", guest)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	run(t, "ip", "link", "set", guest, "netns", ns)
	run(t, "ip", "addr", "add", "10.254.1.1/24", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	run(t, "ip", "-n", ns, "addr", "add", "10.254.1.2/24", "dev", guest)
	run(t, "ip", "-n", ns, "link", "set", guest, "up")
	return ns, host, guest
}

// remoteEnds are the server's and relay's sockets here and the client's
// and peer's in ns, and their binding, installed in p.
func remoteEnds(t *testing.T, p *Path, ns string) (ends, Binding) {
	t.Helper()
	var e ends
	e.server, e.relay = udpOn(t, "10.254.1.1"), udpOn(t, "10.254.1.1")
	inNetns(t, ns, func() { e.client, e.peer = udpOn(t, "10.254.1.2"), udpOn(t, "10.254.1.2") })
	b := Binding{Client: addr(e.client), Server: addr(e.server), Relay: addr(e.relay), Peer: addr(e.peer), Channel: 0x4abc}

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
	ns, host, _ := remoteHost(t)
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
	e, b := remoteEnds(t, p, ns)
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
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
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
	ns, host, guest := remoteHost(t)
	p, err := Open([]string{host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	e, b := remoteEnds(t, p, ns)
	payload := bytes.Repeat([]byte{0x5a}, 1200)
	// With forwarding, by the route lookup's interface and next hop; without,
	// by the interface of user space's route and the neighbour table.
	for _, forwarding := range []string{"1", "0"} {
		run(t, "sysctl", "-qw", "net.ipv4.conf."+host+".forwarding="+forwarding)
		for range 3 {
			if _, err := e.client.WriteToUDPAddrPort(channelData(0x4abc, payload), b.Server); err != nil {
				t.Fatal(err)
			}
			if got, from := read(t, e.peer); !bytes.Equal(got, payload) || from != b.Relay {
				t.Fatalf("forwarding=%s: peer got %d bytes from %v, want %d from %v", forwarding, len(got), from, len(payload), b.Relay)
			}
			if _, err := e.peer.WriteToUDPAddrPort([]byte("back"), b.Relay); err != nil {
				t.Fatal(err)
			}
			if got, from := read(t, e.client); !bytes.Equal(got, channelData(0x4abc, []byte("back"))) || from != b.Server {
				t.Fatalf("forwarding=%s: client got %x from %v", forwarding, got, from)
			}
		}
		quiet(t, e.server, "relayed in the kernel, forwarding="+forwarding)
		quiet(t, e.relay, "relayed in the kernel, forwarding="+forwarding)
	}
	if toPeer, toClient, err := p.Counts(b); err != nil || toPeer.Packets != 6 || toClient.Packets != 6 {
		t.Fatalf("counts %+v %+v %v, want 6 each way", toPeer, toClient, err)
	}

	// A peer's segmented send (UDP_SEGMENT: one buffer of several
	// datagrams crosses the veth pair) goes up as the datagrams it is.
	rc, err := e.peer.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	const segment = 100
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, segment)
	}); err != nil || serr != nil {
		t.Fatalf("UDP_SEGMENT: %v %v", err, serr)
	}
	segmented := bytes.Repeat([]byte{0x33}, 3*segment)
	if _, err := e.peer.WriteToUDPAddrPort(segmented, b.Relay); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got, _ := read(t, e.relay); !bytes.Equal(got, segmented[i*segment:(i+1)*segment]) {
			t.Fatalf("segmented send: datagram %d is %d bytes, want segment %d unchanged", i, len(got), i)
		}
	}
	quiet(t, e.client, "segmented send")
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 0)
	}); err != nil || serr != nil {
		t.Fatalf("UDP_SEGMENT off: %v %v", err, serr)
	}

	// A peer's datagram that fits the link but whose ChannelData (4 bytes
	// more) would not is left to the relay's socket, either way.
	const mtu = 20 + 8 + 1200 + 2
	run(t, "ip", "link", "set", host, "mtu", fmt.Sprint(mtu))
	run(t, "ip", "-n", ns, "link", "set", guest, "mtu", fmt.Sprint(mtu))
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
