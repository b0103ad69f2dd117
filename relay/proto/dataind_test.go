package proto

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

func TestDataIndicationType(t *testing.T) {
	if got := stun.NewType(stun.MethodData, stun.ClassIndication).Value(); got != dataIndicationType {
		t.Fatalf("pion Data indication type %#04x, ours %#04x", got, dataIndicationType)
	}
	if DataIndicationHeadroom != 48 {
		t.Fatalf("DataIndicationHeadroom = %d, want 48", DataIndicationHeadroom)
	}
}

// fillDataIndication lays out buf as a relay loop does: garbage everywhere
// (to catch unwritten bytes), payload at the headroom.
func fillDataIndication(n int) (buf, payload []byte) {
	buf = bytes.Repeat([]byte{0xAA}, DataIndicationHeadroom+n+3)
	payload = make([]byte, n)
	for i := range payload {
		payload[i] = byte(i*7 + 1)
	}
	copy(buf[DataIndicationHeadroom:], payload)
	return buf, payload
}

func TestPutDataIndication(t *testing.T) {
	peers := []struct {
		name      string
		peer      netip.AddrPort
		want      netip.AddrPort
		wantStart int
	}{
		{"ipv4", netip.MustParseAddrPort("198.51.100.1:40000"), netip.MustParseAddrPort("198.51.100.1:40000"), 12},
		{"ipv6", netip.MustParseAddrPort("[2001:db8::42]:1"), netip.MustParseAddrPort("[2001:db8::42]:1"), 0},
		{"4in6", netip.MustParseAddrPort("[::ffff:203.0.113.5]:65535"), netip.MustParseAddrPort("203.0.113.5:65535"), 12},
	}
	txID := [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	for _, p := range peers {
		for _, n := range []int{0, 1, 2, 3, 4, 1200, MaxDataIndicationPayload} {
			t.Run(fmt.Sprintf("%s/%d", p.name, n), func(t *testing.T) {
				buf, payload := fillDataIndication(n)
				frame := PutDataIndication(buf, n, p.peer, txID)
				if frame == nil {
					t.Fatalf("n=%d: nil frame", n)
				}
				if len(frame)%4 != 0 || len(frame) != DataIndicationHeadroom-p.wantStart+PaddedLen(n) {
					t.Fatalf("n=%d: frame length %d", n, len(frame))
				}
				if &frame[0] != &buf[p.wantStart] {
					t.Errorf("n=%d: frame does not start at buf[%d]", n, p.wantStart)
				}
				if pad := frame[len(frame)-(PaddedLen(n)-n):]; !bytes.Equal(pad, make([]byte, len(pad))) {
					t.Errorf("n=%d: padding %x not zeroed", n, pad)
				}
				if Classify(frame[0]) != KindSTUN || !stun.IsMessage(frame) {
					t.Errorf("n=%d: not recognised as STUN", n)
				}

				// Decode in place (no copy) with pion, as a client would.
				m := &stun.Message{Raw: frame}
				if err := m.Decode(); err != nil {
					t.Fatalf("n=%d: pion Decode: %v", n, err)
				}
				if m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) || m.TransactionID != txID {
					t.Errorf("n=%d: type %v txid %x", n, m.Type, m.TransactionID)
				}
				if len(m.Attributes) != 2 || m.Contains(stun.AttrFingerprint) {
					t.Errorf("n=%d: attributes %v, want XOR-PEER-ADDRESS and DATA only", n, m.Attributes)
				}
				got, err := GetXORAddress(m, stun.AttrXORPeerAddress)
				if err != nil || got != p.want {
					t.Errorf("n=%d: peer %v, %v; want %v", n, got, err, p.want)
				}
				var pa stun.XORMappedAddress
				if err := pa.GetFromAs(m, stun.AttrXORPeerAddress); err != nil || pa.Port != int(p.want.Port()) {
					t.Errorf("n=%d: pion peer %v:%d, %v", n, pa.IP, pa.Port, err)
				}
				var d Data
				if err := d.GetFrom(m); err != nil || !bytes.Equal(d, payload) {
					t.Errorf("n=%d: DATA %d bytes, %v; want %d bytes", n, len(d), err, n)
				}
			})
		}
	}
}

func TestPutDataIndicationRejects(t *testing.T) {
	peer := netip.MustParseAddrPort("192.0.2.1:1")
	buf := make([]byte, DataIndicationHeadroom+MaxDataIndicationPayload+8)
	tests := []struct {
		name string
		n    int
		peer netip.AddrPort
	}{
		{"negative", -1, peer},
		{"too large", MaxDataIndicationPayload + 1, peer},
		{"invalid peer", 10, netip.AddrPort{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if f := PutDataIndication(buf, tt.n, tt.peer, [12]byte{}); f != nil {
				t.Errorf("got %d-byte frame, want nil", len(f))
			}
		})
	}
	t.Run("short buffer panics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("no panic")
			}
		}()
		PutDataIndication(make([]byte, DataIndicationHeadroom+4), 5, peer, [12]byte{})
	})
}

func TestPutDataIndicationAllocs(t *testing.T) {
	for _, s := range []string{"192.0.2.1:1", "[2001:db8::1]:2"} {
		peer := netip.MustParseAddrPort(s)
		buf, _ := fillDataIndication(1200)
		if n := testing.AllocsPerRun(1000, func() {
			PutDataIndication(buf, 1200, peer, [12]byte{})
		}); n != 0 {
			t.Errorf("%s: PutDataIndication allocates %.1f times, want 0", s, n)
		}
	}
}

func TestNewTransactionID(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{1})
	seen := make(map[[12]byte]bool)
	for range 1000 {
		id := NewTransactionID(rng)
		if seen[id] {
			t.Fatalf("duplicate transaction ID %x", id)
		}
		seen[id] = true
	}
	// Two generators with one seed agree; the output is not constant.
	a, b := rand.NewChaCha8([32]byte{7}), rand.NewChaCha8([32]byte{7})
	if x, y := NewTransactionID(a), NewTransactionID(b); x != y || x == NewTransactionID(a) {
		t.Errorf("not a deterministic function of the stream")
	}
	if n := testing.AllocsPerRun(1000, func() { _ = NewTransactionID(rng) }); n != 0 {
		t.Errorf("NewTransactionID allocates %.1f times, want 0", n)
	}
}

func BenchmarkPutDataIndication(b *testing.B) {
	for _, s := range []string{"192.0.2.1:3478", "[2001:db8::1]:3478"} {
		peer := netip.MustParseAddrPort(s)
		buf, _ := fillDataIndication(1200)
		name := "ipv4"
		if peer.Addr().Is6() {
			name = "ipv6"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(1200)
			for b.Loop() {
				if PutDataIndication(buf, 1200, peer, testTxID) == nil {
					b.Fatal("nil frame")
				}
			}
		})
	}
}
