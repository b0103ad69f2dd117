package proto

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

// TestICMPWireLayout pins RFC 8656 Figure 11: 16 reserved bits, a 7-bit
// type, a 9-bit code, 32 bits of error data.
func TestICMPWireLayout(t *testing.T) {
	for _, tc := range []struct {
		icmp ICMP
		want []byte
	}{
		{ICMP{Type: 3, Code: 3}, []byte{0, 0, 3 << 1, 3, 0, 0, 0, 0}},
		{ICMP{Type: 3, Code: 4, Data: 1400}, []byte{0, 0, 3 << 1, 4, 0, 0, 0x05, 0x78}},
		{ICMP{Type: 1, Code: 4}, []byte{0, 0, 1 << 1, 4, 0, 0, 0, 0}},
		{ICMP{Type: MaxICMPType, Code: MaxICMPCode, Data: 0xFFFFFFFF}, []byte{0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
	} {
		m := stun.New()
		if err := tc.icmp.AddTo(m); err != nil {
			t.Fatalf("%+v: %v", tc.icmp, err)
		}
		if v, _ := m.Get(AttrICMP); !bytes.Equal(v, tc.want) {
			t.Errorf("%+v encodes as % x, want % x", tc.icmp, v, tc.want)
		}
		m.WriteHeader()
		var got ICMP
		if err := got.GetFrom(decode(t, m.Raw)); err != nil || got != tc.icmp {
			t.Errorf("%+v decodes as %+v, %v", tc.icmp, got, err)
		}
	}
}

func TestICMPGetFrom(t *testing.T) {
	// Reserved bits are ignored on receipt.
	m := build(t, stun.NewType(stun.MethodData, stun.ClassIndication), rawAttr{AttrICMP, []byte{0xAB, 0xCD, 11 << 1, 0, 0, 0, 0, 0}})
	var got ICMP
	if err := got.GetFrom(m); err != nil || got != (ICMP{Type: 11}) {
		t.Errorf("reserved bits set: %+v, %v; want type 11", got, err)
	}
	for _, v := range [][]byte{nil, {0, 0, 6, 3}, make([]byte, 12)} {
		m := build(t, stun.NewType(stun.MethodData, stun.ClassIndication), rawAttr{AttrICMP, v})
		if err := got.GetFrom(m); !errors.Is(err, stun.ErrAttributeSizeInvalid) {
			t.Errorf("%d-byte ICMP: %v, want ErrAttributeSizeInvalid", len(v), err)
		}
	}
	if err := got.GetFrom(stun.New()); !errors.Is(err, stun.ErrAttributeNotFound) {
		t.Errorf("no ICMP: %v", err)
	}
	for _, bad := range []ICMP{{Type: 128}, {Code: 512}} {
		if err := bad.AddTo(stun.New()); !errors.Is(err, ErrICMPRange) {
			t.Errorf("%+v AddTo: %v, want ErrICMPRange", bad, err)
		}
	}
}

// TestPutICMPIndication: RFC 8656 §11.5, "The Data indication MUST contain
// both an XOR-PEER-ADDRESS and an ICMP attribute", and no DATA.
func TestPutICMPIndication(t *testing.T) {
	for _, peer := range []netip.AddrPort{
		netip.MustParseAddrPort("198.51.100.20:49152"),
		netip.MustParseAddrPort("[2001:db8::7]:50000"),
		netip.MustParseAddrPort("[::ffff:192.0.2.1]:3478"), // encoded as IPv4
	} {
		icmp := ICMP{Type: 3, Code: 3}
		buf := bytes.Repeat([]byte{0xAA}, ICMPIndicationSize)
		frame := PutICMPIndication(buf, peer, icmp, testTxID)
		// The same message built with pion.
		rebuilt := stun.New()
		rebuilt.TransactionID = testTxID
		rebuilt.Type = stun.NewType(stun.MethodData, stun.ClassIndication)
		rebuilt.WriteHeader()
		_ = AddXORAddress(rebuilt, stun.AttrXORPeerAddress, peer)
		_ = icmp.AddTo(rebuilt)
		if !bytes.Equal(frame, rebuilt.Raw) {
			t.Errorf("%v:\n got % x\nwant % x", peer, frame, rebuilt.Raw)
		}
	}
	if PutICMPIndication(make([]byte, ICMPIndicationSize), netip.AddrPort{}, ICMP{Type: 3}, testTxID) != nil {
		t.Error("built for an invalid peer")
	}
	if PutICMPIndication(make([]byte, ICMPIndicationSize), netip.MustParseAddrPort("192.0.2.1:1"), ICMP{Type: 200}, testTxID) != nil {
		t.Error("built for type 200")
	}
}
