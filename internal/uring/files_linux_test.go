package uring

import (
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFixedFileOutlivesDescriptor: a socket in a file slot sends by slot
// after its descriptor is closed, and is closed (its port free again)
// once the slot is cleared.
func TestFixedFileOutlivesDescriptor(t *testing.T) {
	r := newRing(t)
	if err := r.RegisterFiles(8); err != nil {
		t.Fatal(err)
	}
	if r.Files() != 8 {
		t.Fatalf("Files = %d, want 8", r.Files())
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa0, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa0.(*unix.SockaddrInet4).Port
	if err := r.SetFile(5, fd); err != nil {
		t.Fatal(err)
	}
	_ = unix.Close(fd) // the ring's reference keeps the socket

	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	payload := []byte("fixed")
	m := newUDPMsg(to, payload)
	e := r.SQE()
	PrepSendMsg(e, -1, &m.msg, unix.MSG_DONTWAIT, 7)
	e.UseFixed(5)
	if c := wait(t, r, 1)[0]; c.UserData != 7 || c.Res != int32(len(payload)) {
		t.Fatalf("send completion %+v", c)
	}
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "fixed" || int(from.Port()) != port {
		t.Fatalf("peer read %q from %v, %v; want \"fixed\" from port %d", buf[:n], from, err, port)
	}
	runtime.KeepAlive(m)

	// Bound while in the slot, free once it is cleared.
	if c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err == nil {
		c.Close()
		t.Fatalf("port %d free while its socket is in a slot", port)
	}
	if err := r.SetFile(5, -1); err != nil {
		t.Fatal(err)
	}
	var lerr error
	for range 100 { // the kernel drops the reference after the slot's last use
		var c *net.UDPConn
		if c, lerr = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); lerr == nil {
			c.Close()
			break
		}
		_, _ = r.Enter(0, 0)
		time.Sleep(10 * time.Millisecond)
	}
	if lerr != nil {
		t.Fatalf("port %d still taken after its slot was cleared: %v", port, lerr)
	}
	if err := r.SetFile(8, -1); err == nil {
		t.Fatal("SetFile past the table: no error")
	}
}
