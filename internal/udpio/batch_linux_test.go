package udpio

import (
	"encoding/binary"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postern/postern/internal/turntest"
)

// fdOf returns conn's descriptor, for the calls that take one (the socket
// stays conn's: it is closed with it).
func fdOf(t *testing.T, conn *net.UDPConn) int {
	t.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// recvAll reads datagrams from c until want arrived (2 s each at most) and
// checks their sizes and the sequence numbers in their first 4 bytes.
func recvAll(t *testing.T, c *net.UDPConn, sizes []int) {
	t.Helper()
	buf := make([]byte, MaxDatagram)
	for i, want := range sizes {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(sizes), err)
		}
		if n != want || int(binary.BigEndian.Uint32(buf)) != i {
			t.Fatalf("datagram %d: %d bytes with sequence %d, want %d bytes", i, n, binary.BigEndian.Uint32(buf), want)
		}
	}
}

// TestRunSendGSO sends runs with one GSO send each (Bytes and Control)
// and checks that the peer receives the datagrams one by one, in order, a
// shorter last one included.
func TestRunSendGSO(t *testing.T) {
	from, peer := turntest.ListenUDP(t), turntest.ListenUDP(t)
	sock := mustSocket(t, from)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	s := NewSender()
	r := NewRun(make([]byte, MaxGSOBytes))
	sizes := []int{300, 300, 300, 300, 120}
	for i, n := range sizes {
		d := make([]byte, n)
		binary.BigEndian.PutUint32(d, uint32(i))
		if !r.Joins(from, to, n) {
			t.Fatalf("datagram %d refused", i)
		}
		r.Add(from, to, d)
	}
	if err := s.Send(sock, r.Bytes(), r.Control(), r.To()); err != nil {
		if GSOUnsupported(err) {
			t.Skipf("no UDP GSO here: %v", err)
		}
		t.Fatal(err)
	}
	recvAll(t, peer, sizes)
	// Sent datagram by datagram, the same run arrives the same.
	for i := range r.Len() {
		if err := s.Send(sock, r.Datagram(i), nil, r.To()); err != nil {
			t.Fatal(err)
		}
	}
	recvAll(t, peer, sizes)
}

// TestBatchRecvAllocatesNothing reads batches with recvmmsg and decodes
// their sources, and sends with the raw sender, and counts allocations.
func TestBatchRecvAllocatesNothing(t *testing.T) {
	rx, tx := turntest.ListenUDP(t), turntest.ListenUDP(t)
	fd := uintptr(fdOf(t, rx))
	sock := mustSocket(t, tx)
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	want := tx.LocalAddr().(*net.UDPAddr).AddrPort()
	b := NewBatch(8, 16, 2048, 3)
	b.Zones = &Zones{}
	s := NewSender()
	payload := []byte("batch")
	round := func() {
		for range 4 {
			if err := s.Send(sock, payload, nil, to); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		for deadline := time.Now().Add(2 * time.Second); got < 4 && time.Now().Before(deadline); {
			if !b.Recv(fd) {
				continue // not there yet
			}
			if b.Err != nil {
				t.Fatal(b.Err)
			}
			for i := range b.N {
				pkt, from, ok := b.Msg(i)
				if !ok || string(pkt) != "batch" || from != want {
					t.Fatalf("datagram %q from %v (%v), want %q from %v", pkt, from, ok, payload, want)
				}
				if &pkt[0] != &b.Bufs[i][16] {
					t.Fatal("datagram not read after the headroom")
				}
			}
			got += b.N
		}
		if got != 4 {
			t.Fatalf("received %d datagrams, want 4", got)
		}
	}
	round()
	if n := testing.AllocsPerRun(50, round); n != 0 {
		t.Errorf("%v allocations per round of 4 datagrams, want 0", n)
	}
}

// TestConnectedBatch sends with sendmmsg on a connected socket and reads
// with a connected batch (no sources).
func TestConnectedBatch(t *testing.T) {
	rx := turntest.ListenUDP(t)
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	out := NewConnectedBatch(4, 64)
	lens := []int{10, 20, 30}
	for i := range lens {
		binary.BigEndian.PutUint32(out.Bufs[i], uint32(i))
	}
	sent, err := out.Send(fdOf(t, tx), lens)
	if err != nil || sent != len(lens) {
		t.Fatalf("Send = %d, %v; want %d", sent, err, len(lens))
	}
	recvAll(t, rx, lens)
	if n := testing.AllocsPerRun(20, func() { _, _ = out.Send(fdOf(t, tx), lens[:1]) }); n != 0 {
		t.Errorf("%v allocations per sendmmsg, want 0", n)
	}

	in := NewConnectedBatch(4, 64)
	// tx is connected to rx: only rx's datagrams reach it.
	if _, err := rx.WriteToUDPAddrPort([]byte("hello"), tx.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	fd := uintptr(fdOf(t, tx))
	deadline := time.Now().Add(2 * time.Second)
	for !in.Recv(fd) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if in.Err != nil || in.N != 1 {
		t.Fatalf("Recv: %d datagrams, %v", in.N, in.Err)
	}
	if pkt, from, ok := in.Msg(0); !ok || string(pkt) != "hello" || from.IsValid() {
		t.Errorf("Msg = %q from %v (%v), want \"hello\" with no source", pkt, from, ok)
	}
	if err := SetGSO(fdOf(t, tx), 0); err != nil {
		t.Errorf("SetGSO(0): %v", err)
	}
}

// countingReader is a Reader that counts what it is handed.
type countingReader struct {
	b        *Batch
	got      atomic.Int64
	acquired atomic.Int64
}

func (r *countingReader) Acquire() *Batch { r.acquired.Add(1); return r.b }
func (r *countingReader) Release(*Batch)  {}
func (r *countingReader) Handle(b *Batch) { r.got.Add(int64(b.N)) }

// TestReadLoop: ReadLoop hands every datagram to its reader, takes no batch
// from a probe of an empty socket, skips an ICMP error (port unreachable
// from a send to a closed port), and returns when the socket is closed.
func TestReadLoop(t *testing.T) {
	conn := turntest.ListenUDP(t)
	// With IP_RECVERR an unconnected socket hears of ICMP errors.
	if err := unix.SetsockoptInt(fdOf(t, conn), unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
		t.Fatal(err)
	}
	r := &countingReader{b: NewBatch(4, 0, 2048, 0)}
	done := make(chan error, 1)
	go func() { done <- ReadLoop(conn, r, true) }()
	time.Sleep(50 * time.Millisecond)
	if n := r.acquired.Load(); n != 0 {
		t.Errorf("probing an empty socket acquired %d batches", n)
	}
	// A send from conn to a closed port: the ICMP error comes back as
	// ECONNREFUSED on conn's next receive, which ReadLoop must survive.
	closed := turntest.ListenUDP(t)
	dead := closed.LocalAddr().(*net.UDPAddr).AddrPort()
	_ = closed.Close()
	if err := NewSender().Send(mustSocket(t, conn), []byte("x"), nil, dead); err != nil && !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatal(err)
	}
	to := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	c := turntest.ListenUDP(t)
	const n = 10
	for range n {
		if _, err := c.WriteToUDPAddrPort([]byte("data"), to); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for r.got.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := r.got.Load(); got != n {
		t.Errorf("reader got %d datagrams, want %d", got, n)
	}
	_ = conn.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadLoop returned %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadLoop did not return after Close")
	}
}
