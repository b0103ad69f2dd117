package proto

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

var xorAttrs = []stun.AttrType{stun.AttrXORPeerAddress, stun.AttrXORRelayedAddress, stun.AttrXORMappedAddress}

func TestXORAddressRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		in      netip.AddrPort
		want    netip.AddrPort
		wantLen int
	}{
		{"ipv4", netip.MustParseAddrPort("192.0.2.1:32853"), netip.MustParseAddrPort("192.0.2.1:32853"), 8},
		{"ipv4 zero port", netip.MustParseAddrPort("0.0.0.0:0"), netip.MustParseAddrPort("0.0.0.0:0"), 8},
		{"ipv4 max", netip.MustParseAddrPort("255.255.255.255:65535"), netip.MustParseAddrPort("255.255.255.255:65535"), 8},
		{"ipv6", netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853"),
			netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853"), 20},
		{"ipv6 loopback", netip.MustParseAddrPort("[::1]:3478"), netip.MustParseAddrPort("[::1]:3478"), 20},
		// 4in6-mapped inputs are encoded, and so returned, as IPv4.
		{"4in6 mapped", netip.MustParseAddrPort("[::ffff:198.51.100.7]:5000"), netip.MustParseAddrPort("198.51.100.7:5000"), 8},
		{"zone dropped", netip.MustParseAddrPort("[fe80::1%eth0]:9"), netip.MustParseAddrPort("[fe80::1]:9"), 20},
	}
	for _, tt := range tests {
		for _, attr := range xorAttrs {
			t.Run(tt.name+"/"+attr.String(), func(t *testing.T) {
				m := build(t, stun.BindingSuccess, setterFunc(func(m *stun.Message) error {
					return AddXORAddress(m, attr, tt.in)
				}))
				v, err := m.Get(attr)
				if err != nil {
					t.Fatal(err)
				}
				if len(v) != tt.wantLen {
					t.Errorf("value length %d, want %d", len(v), tt.wantLen)
				}
				got, err := GetXORAddress(m, attr)
				if err != nil {
					t.Fatalf("GetXORAddress: %v", err)
				}
				if got != tt.want {
					t.Errorf("got %v, want %v", got, tt.want)
				}
				if tt.want.Addr().Is4() && !got.Addr().Is4() {
					t.Errorf("IPv4 returned as %v, want unmapped", got)
				}
				// pion's own decoder must agree with our encoding.
				var pa stun.XORMappedAddress
				if err := pa.GetFromAs(m, attr); err != nil {
					t.Fatalf("pion GetFromAs: %v", err)
				}
				if pip, _ := netip.AddrFromSlice(pa.IP); pip.Unmap() != tt.want.Addr() || pa.Port != int(tt.want.Port()) {
					t.Errorf("pion decoded %v:%d, want %v", pa.IP, pa.Port, tt.want)
				}
			})
		}
	}
}

// TestXORAddressFromPion decodes addresses encoded by pion.
func TestXORAddressFromPion(t *testing.T) {
	for _, s := range []string{"203.0.113.9:443", "[2001:db8::beef]:65535"} {
		want := netip.MustParseAddrPort(s)
		m := build(t, stun.BindingSuccess, setterFunc(func(m *stun.Message) error {
			return stun.XORMappedAddress{IP: net.IP(want.Addr().AsSlice()), Port: int(want.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
		}))
		got, err := GetXORAddress(m, stun.AttrXORPeerAddress)
		if err != nil || got != want {
			t.Errorf("GetXORAddress = %v, %v; want %v", got, err, want)
		}
	}
}

func TestXORAddressErrors(t *testing.T) {
	v4 := []byte{0, 1, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43}
	v6 := append([]byte{0, 2, 0xa1, 0x47}, make([]byte, 16)...)
	tests := []struct {
		name  string
		value []byte // nil: attribute absent
		want  error
	}{
		{"missing", nil, stun.ErrAttributeNotFound},
		{"empty", []byte{}, ErrBadAddressLength},
		{"short header", []byte{0, 1, 0}, ErrBadAddressLength},
		{"family 0", []byte{0, 0, 0, 0, 1, 2, 3, 4}, ErrBadAddressFamily},
		{"family 3", []byte{0, 3, 0, 0, 1, 2, 3, 4}, ErrBadAddressFamily},
		{"family in reserved byte", []byte{1, 0, 0, 0, 1, 2, 3, 4}, ErrBadAddressFamily},
		{"ipv4 header only", v4[:4], ErrBadAddressLength},
		{"ipv4 short", v4[:7], ErrBadAddressLength},
		{"ipv4 long", append(v4[:8:8], 0, 0, 0, 0), ErrBadAddressLength},
		{"ipv4 with ipv6 length", append([]byte{0, 1}, v6[2:]...), ErrBadAddressLength},
		{"ipv6 short", v6[:19], ErrBadAddressLength},
		{"ipv6 with ipv4 length", append([]byte{0, 2}, v4[2:]...), ErrBadAddressLength},
		{"ipv6 long", append(v6[:20:20], 0, 0, 0, 0), ErrBadAddressLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var setters []stun.Setter
			if tt.value != nil {
				setters = append(setters, rawAttr{stun.AttrXORPeerAddress, tt.value})
			}
			m := build(t, stun.NewType(stun.MethodSend, stun.ClassIndication), setters...)
			got, err := GetXORAddress(m, stun.AttrXORPeerAddress)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if got.IsValid() {
				t.Errorf("returned %v with an error", got)
			}
		})
	}
	t.Run("reserved byte ignored", func(t *testing.T) {
		m := build(t, stun.BindingSuccess, rawAttr{stun.AttrXORMappedAddress, append([]byte{0xff}, v4[1:]...)})
		got, err := GetXORAddress(m, stun.AttrXORMappedAddress)
		if err != nil || got != netip.MustParseAddrPort("192.0.2.1:32853") {
			t.Errorf("got %v, %v", got, err)
		}
	})
	t.Run("invalid AddrPort", func(t *testing.T) {
		if err := AddXORAddress(stun.New(), stun.AttrXORPeerAddress, netip.AddrPort{}); !errors.Is(err, ErrBadAddressFamily) {
			t.Errorf("err = %v, want ErrBadAddressFamily", err)
		}
	})
}

// TestGetXORAddressAllocs: HOT, 0 allocations on success and on failure.
func TestGetXORAddressAllocs(t *testing.T) {
	cases := map[string]*stun.Message{
		"ipv4": build(t, stun.BindingSuccess, setterFunc(func(m *stun.Message) error {
			return AddXORAddress(m, stun.AttrXORPeerAddress, netip.MustParseAddrPort("192.0.2.1:1"))
		})),
		"ipv6": build(t, stun.BindingSuccess, setterFunc(func(m *stun.Message) error {
			return AddXORAddress(m, stun.AttrXORPeerAddress, netip.MustParseAddrPort("[2001:db8::1]:1"))
		})),
		"missing":    build(t, stun.BindingSuccess),
		"bad family": build(t, stun.BindingSuccess, rawAttr{stun.AttrXORPeerAddress, []byte{0, 9, 0, 0, 0, 0, 0, 0}}),
		"bad length": build(t, stun.BindingSuccess, rawAttr{stun.AttrXORPeerAddress, []byte{0, 1, 0, 0, 0}}),
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, func() {
				_, _ = GetXORAddress(m, stun.AttrXORPeerAddress)
			}); n != 0 {
				t.Errorf("GetXORAddress allocates %.1f times, want 0", n)
			}
		})
	}
}

func BenchmarkGetXORAddress(b *testing.B) {
	for _, s := range []string{"192.0.2.1:3478", "[2001:db8::1]:3478"} {
		ap := netip.MustParseAddrPort(s)
		m := build(b, stun.NewType(stun.MethodSend, stun.ClassIndication), setterFunc(func(m *stun.Message) error {
			return AddXORAddress(m, stun.AttrXORPeerAddress, ap)
		}), Data(make([]byte, 100)))
		name := "ipv4"
		if ap.Addr().Is6() {
			name = "ipv6"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := GetXORAddress(m, stun.AttrXORPeerAddress); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
