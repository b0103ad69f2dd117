package uring

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newRing makes a ring on the test's locked thread, or skips where the
// kernel has no io_uring (or it is disabled).
func newRing(t *testing.T) *Ring {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	r, err := New(64, Options{CQEntries: 256, DeferTaskrun: true})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Skipf("no io_uring here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// wait enters until want completions are in, at most 2 s.
func wait(t *testing.T, r *Ring, want int) []CQE {
	t.Helper()
	var got []CQE
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		if _, err := r.Enter(1, int64(50*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		r.Completions(func(c *CQE) { got = append(got, *c) })
	}
	if len(got) < want {
		t.Fatalf("got %d completions, want %d", len(got), want)
	}
	return got
}

func TestNop(t *testing.T) {
	r := newRing(t)
	for i := range 3 {
		PrepNop(r.SQE(), uint64(100+i))
	}
	if r.Pending() != 3 {
		t.Fatalf("Pending = %d, want 3", r.Pending())
	}
	got := wait(t, r, 3)
	for i, c := range got {
		if c.UserData != uint64(100+i) || c.Res != 0 {
			t.Errorf("completion %d = %+v", i, c)
		}
	}
}

func TestSQEFull(t *testing.T) {
	r := newRing(t)
	n := 0
	for r.SQE() != nil {
		n++
		if n > 1<<16 {
			t.Fatal("SQE never reports a full queue")
		}
	}
	if n != 64 {
		t.Fatalf("%d entries before full, want 64", n)
	}
	// Submitting frees them.
	if _, err := r.Enter(0, 0); err != nil {
		t.Fatal(err)
	}
	if r.SQE() == nil {
		t.Fatal("queue still full after Enter")
	}
}

// udpPair returns a bound receiving socket's fd and address, and a sender.
func udpPair(t *testing.T) (int, netip.AddrPort, *net.UDPConn) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return fd, addr, c
}

const (
	nameRoom    = unix.SizeofSockaddrInet6
	controlRoom = 4
)

func TestMultishotRecvMsg(t *testing.T) {
	r := newRing(t)
	br, err := r.NewBufRing(1, 8, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	fd, addr, peer := udpPair(t)
	msg := &unix.Msghdr{Namelen: nameRoom, Controllen: controlRoom}
	PrepRecvMsgMultishot(r.SQE(), fd, msg, br.Group(), 7)
	if _, err := r.Enter(0, 0); err != nil {
		t.Fatal(err)
	}
	// More datagrams than buffers, recycled as they come: the request
	// stays armed throughout.
	const count = 20
	from := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	seen := 0
	for seen < count {
		for i := range 4 {
			p := []byte{byte(seen + i), 'x', 'y'}
			if _, err := peer.WriteToUDPAddrPort(p, addr); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range wait(t, r, 4) {
			if c.UserData != 7 || c.Res < 0 || !c.More() {
				t.Fatalf("completion %+v", c)
			}
			id, ok := c.Buffer()
			if !ok {
				t.Fatal("no buffer")
			}
			m, ok := ParseRecvMsg(br.Buf(id), int(c.Res), nameRoom, controlRoom)
			if !ok || m.Truncated() {
				t.Fatalf("ParseRecvMsg: %+v %v", m, ok)
			}
			if m.PayloadOffset != RecvMsgOutSize+nameRoom+controlRoom || string(m.Payload[1:]) != "xy" || m.Payload[0] != byte(seen) {
				t.Fatalf("datagram %d: %q at %d", seen, m.Payload, m.PayloadOffset)
			}
			sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&m.Name[0]))
			port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
			if m.Namelen != unix.SizeofSockaddrInet4 || port != from.Port() {
				t.Fatalf("source %d len %d, want %v", port, m.Namelen, from)
			}
			br.Recycle(id)
			seen++
		}
		br.Publish()
	}
	// Cancel: the request ends with ECANCELED, without More.
	PrepCancel(r.SQE(), 7, 8)
	var final, cancel bool
	for _, c := range wait(t, r, 2) {
		switch c.UserData {
		case 7:
			final = !c.More() && c.Res == -int32(unix.ECANCELED)
		case 8:
			cancel = c.Res == 0
		}
	}
	if !final || !cancel {
		t.Fatalf("cancel: final %v, cancel %v", final, cancel)
	}
}

// TestMultishotNoBuffers: when every buffer is taken the request ends
// (ENOBUFS, no More) and the datagram waits in the socket for a re-armed
// request.
func TestMultishotNoBuffers(t *testing.T) {
	r := newRing(t)
	br, err := r.NewBufRing(2, 2, 256)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	fd, addr, peer := udpPair(t)
	msg := &unix.Msghdr{Namelen: nameRoom, Controllen: controlRoom}
	PrepRecvMsgMultishot(r.SQE(), fd, msg, br.Group(), 1)
	for i := range 3 {
		if _, err := peer.WriteToUDPAddrPort([]byte{byte(i)}, addr); err != nil {
			t.Fatal(err)
		}
	}
	got := wait(t, r, 3)
	if got[2].Res != -int32(unix.ENOBUFS) || got[2].More() {
		t.Fatalf("third completion %+v, want ENOBUFS without More", got[2])
	}
	for _, c := range got[:2] {
		id, _ := c.Buffer()
		br.Recycle(id)
	}
	br.Publish()
	PrepRecvMsgMultishot(r.SQE(), fd, msg, br.Group(), 1)
	c := wait(t, r, 1)[0]
	id, ok := c.Buffer()
	if !ok || c.Res < 0 {
		t.Fatalf("re-armed: %+v", c)
	}
	m, ok := ParseRecvMsg(br.Buf(id), int(c.Res), nameRoom, controlRoom)
	if !ok || len(m.Payload) != 1 || m.Payload[0] != 2 {
		t.Fatalf("re-armed read %+v", m)
	}
}

func TestTruncated(t *testing.T) {
	r := newRing(t)
	br, err := r.NewBufRing(3, 2, RecvMsgOutSize+nameRoom+controlRoom+10)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	fd, addr, peer := udpPair(t)
	msg := &unix.Msghdr{Namelen: nameRoom, Controllen: controlRoom}
	PrepRecvMsgMultishot(r.SQE(), fd, msg, br.Group(), 1)
	if _, err := peer.WriteToUDPAddrPort(make([]byte, 30), addr); err != nil {
		t.Fatal(err)
	}
	c := wait(t, r, 1)[0]
	id, _ := c.Buffer()
	m, ok := ParseRecvMsg(br.Buf(id), int(c.Res), nameRoom, controlRoom)
	if !ok || !m.Truncated() || len(m.Payload) != 10 {
		t.Fatalf("truncated datagram: %+v %v", m, ok)
	}
}

func TestSendMsg(t *testing.T) {
	r := newRing(t)
	fd, _, peer := udpPair(t)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	payload := []byte("hello")
	m := newUDPMsg(to, payload)
	PrepSendMsg(r.SQE(), fd, &m.msg, unix.MSG_DONTWAIT, 9)
	c := wait(t, r, 1)[0]
	if c.UserData != 9 || c.Res != int32(len(payload)) {
		t.Fatalf("send completion %+v", c)
	}
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	n, _, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
	runtime.KeepAlive(m)
}

// udpMsg is a msghdr that sends a payload to an IPv4 address, with the
// memory it points at.
type udpMsg struct {
	sa  unix.RawSockaddrInet4
	iov unix.Iovec
	msg unix.Msghdr
}

func newUDPMsg(to netip.AddrPort, payload []byte) *udpMsg {
	m := &udpMsg{}
	m.sa.Family = unix.AF_INET
	m.sa.Addr = to.Addr().As4()
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&m.sa.Port))[:], to.Port())
	m.iov = unix.Iovec{Base: &payload[0]}
	m.iov.SetLen(len(payload))
	m.msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&m.sa)), Namelen: unix.SizeofSockaddrInet4, Iov: &m.iov, Iovlen: 1}
	return m
}

func TestBadBufRing(t *testing.T) {
	r := newRing(t)
	for _, n := range []int{0, 3, 1 << 16} {
		if _, err := r.NewBufRing(4, n, 64); err == nil {
			t.Errorf("NewBufRing(%d entries) succeeded", n)
		}
	}
}

// TestEnterHeld: a wait for more completions than come returns once
// the minimum wait has passed with the one there is.
func TestEnterHeld(t *testing.T) {
	r := newRing(t)
	if !r.MinWait() {
		t.Skip("kernel without IORING_FEAT_MIN_TIMEOUT")
	}
	PrepNop(r.SQE(), 1)
	start := time.Now()
	if _, err := r.EnterHeld(64, 2000, 500000); err != nil {
		t.Fatal(err)
	}
	if n := r.Completions(func(*CQE) {}); n != 1 {
		t.Fatalf("%d completions, want 1", n)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("EnterHeld took %v with a completion ready", d)
	}
}
