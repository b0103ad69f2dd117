package auth

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPeerPolicyDefault(t *testing.T) {
	p := NewPeerPolicy(nil, nil)
	denied := []string{
		// Known bypass vectors (coturn CVE-2020-26262, restund CVE-2021-21382).
		"0.0.0.0", "::", "127.0.0.1", "127.255.255.254", "::1",
		"::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a00:1",
		"::ffff:10.0.0.1", "169.254.169.254", "::ffff:169.254.169.254",
		"fd00::1", "fe80::1", "fe80::1%eth0", "100.64.0.1", "224.0.0.1",
		"255.255.255.255", "2002:7f00:1::1",
		// More of the same.
		"0.1.2.3", "::0.0.0.0", "::ffff:0.0.0.0", "::ffff:0:0", "64:ff9b::", "64:ff9b::127.0.0.1",
		"::ffff:7f00:1", "::10.1.2.3", "::192.168.1.1", "2002:a9fe:a9fe::1", "2002:c0a8:101::",
		"2002::", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.0.1",
		"100.127.255.255", "192.0.0.9", "192.0.0.170", "192.0.2.1", "192.31.196.1",
		"192.52.193.1", "192.88.99.1", "192.175.48.1", "198.18.0.1", "198.19.255.255",
		"198.51.100.1", "203.0.113.1", "239.255.255.250", "240.0.0.1", "254.1.2.3",
		// IPv6 special purpose.
		"64:ff9b:1::1", "64:ff9b:1:ffff::8.8.8.8", "100::1", "2001::1", "2001:0:4136:e378::1",
		"2001:1ff:ffff::1", "2001:20::1", "2001:db8::1", "3fff::1", "3fff:fff::1", "5f00::1",
		"fc00::1", "fdff:ffff::1", "febf::1", "fec0::1", "feff::1", "ff02::1", "ff05::1:3",
		// Outside 2000::/3: reserved, not global unicast.
		"::2:0:0", "1::1", "100:1::1", "4000::1", "8000::1", "e000::1", "::ffff:0:808:808",
	}
	allowed := []string{
		"8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
		"64:ff9b::1.1.1.1", "::8.8.8.8", "2002:808:808::1", "2001:4860:4860::8888",
		"9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0", "172.15.255.255",
		"172.32.0.0", "192.0.1.0", "192.167.255.255", "192.169.0.0", "198.17.255.255",
		"198.20.0.0", "223.255.255.255", "2001:200::1", "2001:db7:ffff::1", "2001:db9::1",
		"3ffe:ffff::1", "3fff:1000::1", "2003::1", "2a00:1450:4001::1",
	}
	for _, s := range denied {
		t.Run("deny "+s, func(t *testing.T) {
			if p.Allowed(netip.MustParseAddr(s)) {
				t.Fatalf("Allowed(%s) = true, want false", s)
			}
		})
	}
	for _, s := range allowed {
		t.Run("allow "+s, func(t *testing.T) {
			if !p.Allowed(netip.MustParseAddr(s)) {
				t.Fatalf("Allowed(%s) = false, want true", s)
			}
		})
	}
	t.Run("invalid address", func(t *testing.T) {
		if p.Allowed(netip.Addr{}) {
			t.Fatal("zero Addr allowed")
		}
	})
	t.Run("nil policy allows nothing", func(t *testing.T) {
		var nilPolicy *PeerPolicy
		if nilPolicy.Allowed(netip.MustParseAddr("8.8.8.8")) {
			t.Fatal("nil policy allowed 8.8.8.8")
		}
	})
}

// TestPeerPolicyDefaultRanges checks the first and last address of every
// default range, in every spelling that carries it.
func TestPeerPolicyDefaultRanges(t *testing.T) {
	p := NewPeerPolicy(nil, nil)
	for _, pfx := range DefaultDenied() {
		first := pfx.Addr()
		last := lastAddr(pfx)
		for _, a := range []netip.Addr{first, last} {
			for _, form := range spellings(a) {
				if p.Allowed(form) {
					t.Errorf("%v: Allowed(%v) = true", pfx, form)
				}
			}
		}
	}
}

// spellings returns a and, for IPv4, its mapped, compatible, NAT64 and 6to4
// forms.
func spellings(a netip.Addr) []netip.Addr {
	if !a.Is4() {
		return []netip.Addr{a}
	}
	v4 := a.As4()
	mapped := netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
	compat := netip.AddrFrom16([16]byte{12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
	nat64 := netip.AddrFrom16([16]byte{0: 0x00, 1: 0x64, 2: 0xff, 3: 0x9b, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
	sixToFour := netip.AddrFrom16([16]byte{0: 0x20, 1: 0x02, 2: v4[0], 3: v4[1], 4: v4[2], 5: v4[3], 15: 1})
	return []netip.Addr{a, mapped, compat, nat64, sixToFour}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestPeerPolicyExplicit(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			p, err := ParsePrefix(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	tests := []struct {
		name        string
		allow, deny []netip.Prefix
		ip          string
		want        bool
	}{
		{"allow loopback", pfx("127.0.0.0/8"), nil, "127.0.0.1", true},
		{"allow loopback: mapped", pfx("127.0.0.0/8"), nil, "::ffff:127.0.0.1", true},
		{"allow loopback: compatible", pfx("127.0.0.0/8"), nil, "::127.0.0.1", true},
		{"allow loopback: NAT64", pfx("127.0.0.0/8"), nil, "64:ff9b::7f00:1", true},
		{"allow loopback: not 10/8", pfx("127.0.0.0/8"), nil, "10.0.0.1", false},
		{"allow loopback: not ::1", pfx("127.0.0.0/8"), nil, "::1", false},
		{"allow ::1", pfx("::1"), nil, "::1", true},
		{"allow ::1: not 127.0.0.1", pfx("::1"), nil, "127.0.0.1", false},
		{"allow single address", pfx("10.1.2.3"), nil, "10.1.2.3", true},
		{"allow single address: neighbour", pfx("10.1.2.3"), nil, "10.1.2.4", false},
		{"allow ULA", pfx("fd00::/8"), nil, "fd12::1", true},
		{"allow with zone", pfx("fe80::/10"), nil, "fe80::1%eth0", true},
		{"allow mapped prefix", pfx("::ffff:10.0.0.0/104"), nil, "10.9.9.9", true},
		{"allow mapped prefix: mapped", pfx("::ffff:10.0.0.0/104"), nil, "::ffff:10.9.9.9", true},
		{"allow ::/0 does not open mapped loopback", pfx("::/0"), nil, "::ffff:127.0.0.1", false},
		{"allow ::/0 opens IPv6", pfx("::/0"), nil, "fd00::1", true},
		{"allow all IPv4 does not open ::1", pfx("0.0.0.0/0"), nil, "::1", false},
		{"allow all IPv4 does not open ::", pfx("0.0.0.0/0"), nil, "::", false},
		{"allow all IPv4 opens ::0.0.0.2", pfx("0.0.0.0/0"), nil, "::0.0.0.2", true},
		{"deny public", nil, pfx("203.0.0.0/8"), "203.0.0.1", false},
		{"deny public: mapped", nil, pfx("203.0.0.0/8"), "::ffff:203.0.0.1", false},
		{"deny public: compatible", nil, pfx("203.0.0.0/8"), "::203.0.0.1", false},
		{"deny public: NAT64", nil, pfx("203.0.0.0/8"), "64:ff9b::cb00:1", false},
		{"deny public: 6to4", nil, pfx("203.0.0.0/8"), "2002:cb00:1::1", false},
		{"deny public: neighbour", nil, pfx("203.0.0.0/8"), "204.0.0.1", true},
		{"deny IPv6", nil, pfx("2606:4700::/32"), "2606:4700::1111", false},
		{"deny NAT64 prefix", nil, pfx("64:ff9b::/96"), "64:ff9b::808:808", false},
		{"allow wins over deny", pfx("10.0.0.0/24"), pfx("10.0.0.0/8"), "10.0.0.5", true},
		{"deny outside allow", pfx("10.0.0.0/24"), pfx("10.0.0.0/8"), "10.0.1.5", false},
		{"allow wins over deny: IPv6", pfx("2001:db8::/32"), pfx("2001::/16"), "2001:db8::1", true},
		{"invalid prefixes skipped", []netip.Prefix{{}}, []netip.Prefix{{}}, "8.8.8.8", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPeerPolicy(tt.allow, tt.deny)
			if got := p.Allowed(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Fatalf("Allowed(%s) with allow %v deny %v = %v, want %v", tt.ip, tt.allow, tt.deny, got, tt.want)
			}
		})
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"1.2.3.4", "1.2.3.4/32", ""},
		{"::1", "::1/128", ""},
		{"10.0.0.0/8", "10.0.0.0/8", ""},
		{"10.1.2.3/8", "10.0.0.0/8", ""},
		{" 2001:db8::/32 ", "2001:db8::/32", ""},
		{"::ffff:1.2.3.4", "::ffff:1.2.3.4/128", ""},
		{"0.0.0.0/0", "0.0.0.0/0", ""},
		{"fe80::1%eth0", "", "zone"},
		{"fe80::/10%eth0", "", "CIDR"},
		{"10.0.0.0/33", "", "CIDR"},
		{"example.com", "", "CIDR"},
		{"", "", "CIDR"},
		{"10.0.0.1-10.0.0.9", "", "CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePrefix(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePrefix(%q): err = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("ParsePrefix(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

var benchPeers = []netip.Addr{
	netip.MustParseAddr("8.8.8.8"),
	netip.MustParseAddr("192.168.1.1"),
	netip.MustParseAddr("2606:4700::1111"),
	netip.MustParseAddr("::ffff:127.0.0.1"),
	netip.MustParseAddr("fe80::1%eth0"),
	netip.MustParseAddr("2002:808:808::1"),
}

func TestPeerPolicyAllocs(t *testing.T) {
	p := NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")})
	if n := testing.AllocsPerRun(100, func() {
		for _, ip := range benchPeers {
			p.Allowed(ip)
		}
	}); n != 0 {
		t.Fatalf("Allowed allocates %v times", n)
	}
}

func BenchmarkPeerPolicyAllowed(b *testing.B) {
	p := NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")})
	for _, ip := range benchPeers {
		b.Run(ip.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Allowed(ip)
			}
		})
	}
}

func TestEmbeddedIPv4(t *testing.T) {
	for _, tt := range []struct {
		in, want string // want "" for none
	}{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"::127.0.0.1", "127.0.0.1"},
		{"64:ff9b::7f00:1", "127.0.0.1"},
		{"2002:7f00:1::1", "127.0.0.1"},
		{"::", ""},
		{"::1", ""},
		{"2001:db8::1", ""},
		{"fe80::1%eth0", ""},
	} {
		got, ok := EmbeddedIPv4(netip.MustParseAddr(tt.in))
		if ok != (tt.want != "") || ok && got != netip.MustParseAddr(tt.want) {
			t.Errorf("EmbeddedIPv4(%s) = %v, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := EmbeddedIPv4(netip.Addr{}); ok {
		t.Error("EmbeddedIPv4 of the zero Addr reports an address")
	}
}
