package proto

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

var allocateRequest = stun.NewType(stun.MethodAllocate, stun.ClassRequest)

// TestAttributeWire checks each attribute's exact wire value (RFC 8656 §18)
// and that GetFrom reads it back.
func TestAttributeWire(t *testing.T) {
	tests := []struct {
		name   string
		set    stun.Setter
		attr   stun.AttrType
		want   []byte
		decode func(m *stun.Message) (any, error)
		value  any
	}{
		{
			name: "channel number", set: ChannelNumber(0x4001), attr: stun.AttrChannelNumber,
			want:   []byte{0x40, 0x01, 0, 0},
			decode: func(m *stun.Message) (any, error) { var v ChannelNumber; err := v.GetFrom(m); return v, err },
			value:  ChannelNumber(0x4001),
		},
		{
			name: "lifetime", set: Lifetime(600 * time.Second), attr: stun.AttrLifetime,
			want:   []byte{0, 0, 0x02, 0x58},
			decode: func(m *stun.Message) (any, error) { var v Lifetime; err := v.GetFrom(m); return v, err },
			value:  Lifetime(600 * time.Second),
		},
		{
			name: "lifetime zero", set: Lifetime(0), attr: stun.AttrLifetime,
			want:   []byte{0, 0, 0, 0},
			decode: func(m *stun.Message) (any, error) { var v Lifetime; err := v.GetFrom(m); return v, err },
			value:  Lifetime(0),
		},
		{
			name: "requested transport udp", set: ProtoUDP, attr: stun.AttrRequestedTransport,
			want:   []byte{17, 0, 0, 0},
			decode: func(m *stun.Message) (any, error) { var v RequestedTransport; err := v.GetFrom(m); return v, err },
			value:  ProtoUDP,
		},
		{
			name: "requested transport tcp", set: ProtoTCP, attr: stun.AttrRequestedTransport,
			want:   []byte{6, 0, 0, 0},
			decode: func(m *stun.Message) (any, error) { var v RequestedTransport; err := v.GetFrom(m); return v, err },
			value:  ProtoTCP,
		},
		{
			name: "dont fragment", set: DontFragment{}, attr: stun.AttrDontFragment,
			want:   []byte{},
			decode: func(m *stun.Message) (any, error) { var v DontFragment; err := v.GetFrom(m); return v, err },
			value:  DontFragment{},
		},
		{
			name: "even port reserve", set: EvenPort{ReservePort: true}, attr: stun.AttrEvenPort,
			want:   []byte{0x80},
			decode: func(m *stun.Message) (any, error) { var v EvenPort; err := v.GetFrom(m); return v, err },
			value:  EvenPort{ReservePort: true},
		},
		{
			name: "even port", set: EvenPort{}, attr: stun.AttrEvenPort,
			want:   []byte{0x00},
			decode: func(m *stun.Message) (any, error) { var v EvenPort; err := v.GetFrom(m); return v, err },
			value:  EvenPort{},
		},
		{
			name: "requested family ipv6", set: FamilyIPv6, attr: stun.AttrRequestedAddressFamily,
			want:   []byte{2, 0, 0, 0},
			decode: func(m *stun.Message) (any, error) { var v RequestedAddressFamily; err := v.GetFrom(m); return v, err },
			value:  FamilyIPv6,
		},
		{
			name: "connection id", set: ConnectionID(0x8badf00d), attr: stun.AttrConnectionID,
			want:   []byte{0x8b, 0xad, 0xf0, 0x0d},
			decode: func(m *stun.Message) (any, error) { var v ConnectionID; err := v.GetFrom(m); return v, err },
			value:  ConnectionID(0x8badf00d),
		},
		{
			name: "additional family ipv6", set: AdditionalAddressFamily(FamilyIPv6), attr: AttrAdditionalAddressFamily,
			want:   []byte{2, 0, 0, 0},
			decode: func(m *stun.Message) (any, error) { var v AdditionalAddressFamily; err := v.GetFrom(m); return v, err },
			value:  AdditionalAddressFamily(FamilyIPv6),
		},
		{
			name: "address error code", set: AddressErrorCode{Family: FamilyIPv6, Code: 440, Reason: "no"}, attr: AttrAddressErrorCode,
			want:   []byte{2, 0, 4, 40, 'n', 'o'},
			decode: func(m *stun.Message) (any, error) { var v AddressErrorCode; err := v.GetFrom(m); return v, err },
			value:  AddressErrorCode{Family: FamilyIPv6, Code: 440, Reason: "no"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := build(t, allocateRequest, tt.set)
			got, err := m.Get(tt.attr)
			if err != nil {
				t.Fatalf("Get(%s): %v", tt.attr, err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("wire value = %x, want %x", got, tt.want)
			}
			// The whole message stays 4-aligned (padding after 1-byte values).
			if len(m.Raw)%4 != 0 {
				t.Errorf("message length %d not a multiple of 4", len(m.Raw))
			}
			v, err := tt.decode(m)
			if err != nil {
				t.Fatalf("GetFrom: %v", err)
			}
			if v != tt.value {
				t.Errorf("GetFrom = %v, want %v", v, tt.value)
			}
		})
	}
}

// TestAttributeErrors checks that every getter rejects a wrong size with
// stun.ErrAttributeSizeInvalid and a missing attribute with
// stun.ErrAttributeNotFound.
func TestAttributeErrors(t *testing.T) {
	getters := []struct {
		name  string
		attr  stun.AttrType
		sizes []int // wrong sizes to try
		get   func(m *stun.Message) error
	}{
		{"channel number", stun.AttrChannelNumber, []int{0, 2, 3, 5, 8},
			func(m *stun.Message) error { var v ChannelNumber; return v.GetFrom(m) }},
		{"lifetime", stun.AttrLifetime, []int{0, 3, 5, 8},
			func(m *stun.Message) error { var v Lifetime; return v.GetFrom(m) }},
		{"requested transport", stun.AttrRequestedTransport, []int{0, 1, 3, 8},
			func(m *stun.Message) error { var v RequestedTransport; return v.GetFrom(m) }},
		{"dont fragment", stun.AttrDontFragment, []int{1, 4},
			func(m *stun.Message) error { var v DontFragment; return v.GetFrom(m) }},
		{"even port", stun.AttrEvenPort, []int{0, 2, 4},
			func(m *stun.Message) error { var v EvenPort; return v.GetFrom(m) }},
		{"reservation token", stun.AttrReservationToken, []int{0, 4, 7, 9, 16},
			func(m *stun.Message) error { var v ReservationToken; return v.GetFrom(m) }},
		{"requested family", stun.AttrRequestedAddressFamily, []int{0, 1, 8},
			func(m *stun.Message) error { var v RequestedAddressFamily; return v.GetFrom(m) }},
		{"connection id", stun.AttrConnectionID, []int{0, 2, 3, 5, 8},
			func(m *stun.Message) error { var v ConnectionID; return v.GetFrom(m) }},
		{"additional family", AttrAdditionalAddressFamily, []int{0, 1, 8},
			func(m *stun.Message) error { var v AdditionalAddressFamily; return v.GetFrom(m) }},
		{"address error code", AttrAddressErrorCode, []int{0, 3, 768},
			func(m *stun.Message) error { var v AddressErrorCode; return v.GetFrom(m) }},
	}
	for _, g := range getters {
		t.Run(g.name+"/missing", func(t *testing.T) {
			m := build(t, allocateRequest, stun.NewSoftware("x"))
			if err := g.get(m); !errors.Is(err, stun.ErrAttributeNotFound) {
				t.Errorf("err = %v, want ErrAttributeNotFound", err)
			}
		})
		for _, size := range g.sizes {
			t.Run(fmt.Sprintf("%s/size%d", g.name, size), func(t *testing.T) {
				m := build(t, allocateRequest, rawAttr{g.attr, make([]byte, size)})
				err := g.get(m)
				if !errors.Is(err, stun.ErrAttributeSizeInvalid) {
					t.Errorf("size %d: err = %v, want ErrAttributeSizeInvalid", size, err)
				}
			})
		}
	}
	t.Run("data/missing", func(t *testing.T) {
		var d Data
		if err := d.GetFrom(build(t, allocateRequest)); !errors.Is(err, stun.ErrAttributeNotFound) {
			t.Errorf("err = %v, want ErrAttributeNotFound", err)
		}
	})
}

// TestRFFUIgnored checks that reserved bits are ignored on reception, as
// RFC 8656 §18 requires.
func TestRFFUIgnored(t *testing.T) {
	m := build(t, allocateRequest,
		rawAttr{stun.AttrChannelNumber, []byte{0x40, 0x10, 0xff, 0xff}},
		rawAttr{stun.AttrRequestedTransport, []byte{17, 0xff, 0xff, 0xff}},
		rawAttr{stun.AttrEvenPort, []byte{0x7f}},
		rawAttr{stun.AttrRequestedAddressFamily, []byte{1, 0xff, 0xff, 0xff}},
	)
	var (
		n  ChannelNumber
		p  RequestedTransport
		e  EvenPort
		fa RequestedAddressFamily
	)
	for _, g := range []stun.Getter{&n, &p, &e, &fa} {
		if err := g.GetFrom(m); err != nil {
			t.Fatalf("%T.GetFrom: %v", g, err)
		}
	}
	if n != 0x4010 || p != ProtoUDP || e.ReservePort || fa != FamilyIPv4 {
		t.Errorf("got %#x %d %v %d, want 0x4010 17 false 1", n, p, e.ReservePort, fa)
	}
}

func TestChannelNumberValid(t *testing.T) {
	tests := []struct {
		n    ChannelNumber
		want bool
	}{
		{0x0000, false}, {0x3FFF, false}, {0x4000, true}, {0x4ABC, true},
		{0x4FFF, true}, {0x5000, false}, {0x7FFF, false}, {0xFFFF, false},
	}
	for _, tt := range tests {
		if got := tt.n.Valid(); got != tt.want {
			t.Errorf("ChannelNumber(%#x).Valid() = %v, want %v", uint16(tt.n), got, tt.want)
		}
	}
}

func TestRequestedAddressFamilyValid(t *testing.T) {
	for f := range 256 {
		want := f == 1 || f == 2
		if got := RequestedAddressFamily(f).Valid(); got != want {
			t.Errorf("RequestedAddressFamily(%d).Valid() = %v", f, got)
		}
	}
}

func TestLifetimeClamp(t *testing.T) {
	tests := []struct {
		name string
		in   time.Duration
		want uint32
	}{
		{"negative", -time.Hour, 0},
		{"sub-second", 999 * time.Millisecond, 0},
		{"truncated", 90*time.Second + 999*time.Millisecond, 90},
		{"max", math.MaxUint32 * time.Second, math.MaxUint32},
		{"over max", (math.MaxUint32 + 1) * time.Second, math.MaxUint32},
		{"max duration", math.MaxInt64, math.MaxUint32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := build(t, allocateRequest, Lifetime(tt.in))
			var l Lifetime
			if err := l.GetFrom(m); err != nil {
				t.Fatal(err)
			}
			if got := time.Duration(l) / time.Second; got != time.Duration(tt.want) {
				t.Errorf("lifetime %v encoded as %d s, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestReservationToken(t *testing.T) {
	tok := ReservationToken{1, 2, 3, 4, 5, 6, 7, 8}
	m := build(t, allocateRequest, tok)
	got := make(ReservationToken, 0, 8)
	if err := got.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, tok) {
		t.Fatalf("token = %x, want %x", got, tok)
	}
	// The token is a copy: scribbling over the message must not change it.
	clear(m.Raw)
	if !bytes.Equal(got, tok) {
		t.Errorf("token aliases m.Raw")
	}
	for _, bad := range []ReservationToken{nil, {1}, make(ReservationToken, 9)} {
		if err := bad.AddTo(stun.New()); !errors.Is(err, stun.ErrAttributeSizeInvalid) {
			t.Errorf("AddTo(len %d): err = %v, want ErrAttributeSizeInvalid", len(bad), err)
		}
	}
}

func TestDataAliasesRaw(t *testing.T) {
	payload := []byte("hello, peer")
	m := build(t, stun.NewType(stun.MethodSend, stun.ClassIndication), Data(payload))
	var d Data
	if err := d.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d, payload) {
		t.Fatalf("data = %q, want %q", d, payload)
	}
	d[0] = 'J'
	if !bytes.Contains(m.Raw, []byte("Jello")) {
		t.Errorf("Data.GetFrom copied the value; it must alias m.Raw")
	}
	if err := Data(make([]byte, math.MaxUint16+1)).AddTo(stun.New()); !errors.Is(err, stun.ErrAttributeSizeOverflow) {
		t.Errorf("oversized DATA: err = %v, want ErrAttributeSizeOverflow", err)
	}
}

func TestHasDontFragment(t *testing.T) {
	if HasDontFragment(build(t, allocateRequest, ProtoUDP)) {
		t.Error("HasDontFragment without the attribute")
	}
	if !HasDontFragment(build(t, allocateRequest, ProtoUDP, DontFragment{})) {
		t.Error("!HasDontFragment with the attribute")
	}
}
