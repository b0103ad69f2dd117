package udpio

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

// TestRunJoins: which datagrams join a run and how its datagrams come back
// out of it: equal sizes join, a shorter one ends the run, a longer one,
// another socket or destination, the segment limit and the buffer's end
// each refuse.
func TestRunJoins(t *testing.T) {
	a, b := &net.UDPConn{}, &net.UDPConn{} // identities only: nothing is sent
	to := netip.MustParseAddrPort("192.0.2.1:9")
	other := netip.MustParseAddrPort("192.0.2.2:9")
	r := NewRun(make([]byte, MaxGSOBytes))
	if !r.Joins(b, other, 1<<16) {
		t.Fatal("an empty run refused a datagram")
	}
	first := bytes.Repeat([]byte{1}, 100)
	r.Add(a, to, first)
	if r.Len() != 1 || r.To() != to || &r.Datagram(0)[0] != &first[0] {
		t.Fatalf("run of one: len %d to %v, or its datagram was copied", r.Len(), r.To())
	}
	for _, tc := range []struct {
		name string
		conn *net.UDPConn
		to   netip.AddrPort
		n    int
		want bool
	}{
		{"same size", a, to, 100, true},
		{"shorter", a, to, 99, true},
		{"longer", a, to, 101, false},
		{"other socket", b, to, 100, false},
		{"other destination", a, other, 100, false},
	} {
		if got := r.Joins(tc.conn, tc.to, tc.n); got != tc.want {
			t.Errorf("%s: Joins = %v, want %v", tc.name, got, tc.want)
		}
	}
	r.Add(a, to, bytes.Repeat([]byte{2}, 100))
	r.Add(a, to, bytes.Repeat([]byte{3}, 40))
	if r.Joins(a, to, 40) {
		t.Error("a run ended by a shorter datagram took another")
	}
	if r.Len() != 3 || len(r.Bytes()) != 240 {
		t.Fatalf("len %d, %d bytes; want 3, 240", r.Len(), len(r.Bytes()))
	}
	for i, want := range []struct {
		b byte
		n int
	}{{1, 100}, {2, 100}, {3, 40}} {
		if d := r.Datagram(i); len(d) != want.n || d[0] != want.b || d[len(d)-1] != want.b {
			t.Errorf("datagram %d: %d bytes starting %d, want %d of %d", i, len(d), d[0], want.n, want.b)
		}
	}
	r.Reset()
	if r.Len() != 0 || !r.Joins(b, other, 500) {
		t.Fatal("Reset left the run non-empty")
	}

	// Limits: MaxGSOSegments datagrams, and the buffer.
	for range MaxGSOSegments {
		r.Add(a, to, make([]byte, 10))
	}
	if r.Joins(a, to, 10) {
		t.Errorf("a run of %d took one more", MaxGSOSegments)
	}
	small := NewRun(make([]byte, 250))
	small.Add(a, to, make([]byte, 100))
	small.Add(a, to, make([]byte, 100))
	if small.Joins(a, to, 100) || !small.Joins(a, to, 50) {
		t.Error("a run took more than its buffer holds, or refused what fits")
	}
}

func TestSegments(t *testing.T) {
	for _, tc := range []struct{ size, want int }{
		{100, MaxGSOSegments}, {1200, MaxGSOBytes / 1200}, {MaxGSOBytes, 1}, {70000, 1},
	} {
		if got := Segments(tc.size); got != tc.want {
			t.Errorf("Segments(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}
