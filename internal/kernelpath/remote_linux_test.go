//go:build (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm) && linux

package kernelpath

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
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
// next hop's link address; where the interface does not forward (the
// route lookup's condition) it leaves the datagram to the relay's sockets.
func TestRemoteEnds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces and eBPF need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip (Debian package iproute2)")
	}
	ns, host, guest := fmt.Sprintf("kptest%d", os.Getpid()), fmt.Sprintf("kpa%d", os.Getpid()), fmt.Sprintf("kpb%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", guest)
	run(t, "ip", "link", "set", guest, "netns", ns)
	run(t, "ip", "addr", "add", "10.254.1.1/24", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	run(t, "ip", "-n", ns, "addr", "add", "10.254.1.2/24", "dev", guest)
	run(t, "ip", "-n", ns, "link", "set", guest, "up")
	run(t, "sysctl", "-qw", "net.ipv4.conf."+host+".forwarding=1")

	p, err := Open([]string{host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
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
	payload := bytes.Repeat([]byte{0x5a}, 1200)
	for range 3 {
		if _, err := e.client.WriteToUDPAddrPort(channelData(0x4abc, payload), b.Server); err != nil {
			t.Fatal(err)
		}
		if got, from := read(t, e.peer); !bytes.Equal(got, payload) || from != b.Relay {
			t.Fatalf("peer got %d bytes from %v, want %d from %v", len(got), from, len(payload), b.Relay)
		}
		if _, err := e.peer.WriteToUDPAddrPort([]byte("back"), b.Relay); err != nil {
			t.Fatal(err)
		}
		if got, from := read(t, e.client); !bytes.Equal(got, channelData(0x4abc, []byte("back"))) || from != b.Server {
			t.Fatalf("client got %x from %v", got, from)
		}
	}
	quiet(t, e.server, "relayed in the kernel")
	quiet(t, e.relay, "relayed in the kernel")
	if toPeer, toClient, err := p.Counts(b); err != nil || toPeer.Packets != 3 || toClient.Packets != 3 {
		t.Fatalf("counts %+v %+v %v, want 3 each way", toPeer, toClient, err)
	}

	run(t, "sysctl", "-qw", "net.ipv4.conf."+host+".forwarding=0")
	msg := channelData(0x4abc, payload)
	if _, err := e.client.WriteToUDPAddrPort(msg, b.Server); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, e.server); !bytes.Equal(got, msg) {
		t.Fatalf("without forwarding: server socket got %d bytes, want the ChannelData unchanged", len(got))
	}
	quiet(t, e.peer, "without forwarding")
}
