package auth

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// defaultDenied lists the default-deny ranges: the IANA
// IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890) entries that
// are not globally reachable, plus multicast, reserved and deprecated
// blocks.
func defaultDenied() []string {
	return []string{
		// IPv4.
		"0.0.0.0/8",          // this network (RFC 791); 0.0.0.0 reaches the local host
		"10.0.0.0/8",         // private (RFC 1918)
		"100.64.0.0/10",      // shared address space, carrier-grade NAT (RFC 6598)
		"127.0.0.0/8",        // loopback (RFC 1122)
		"169.254.0.0/16",     // link local, cloud metadata 169.254.169.254 (RFC 3927)
		"172.16.0.0/12",      // private (RFC 1918)
		"192.0.0.0/24",       // IETF protocol assignments (RFC 6890)
		"192.0.2.0/24",       // documentation TEST-NET-1 (RFC 5737)
		"192.31.196.0/24",    // AS112-v4 (RFC 7535)
		"192.52.193.0/24",    // AMT (RFC 7450)
		"192.88.99.0/24",     // deprecated 6to4 relay anycast (RFC 7526)
		"192.168.0.0/16",     // private (RFC 1918)
		"192.175.48.0/24",    // direct delegation AS112 service (RFC 7534)
		"198.18.0.0/15",      // benchmarking (RFC 2544)
		"198.51.100.0/24",    // documentation TEST-NET-2 (RFC 5737)
		"203.0.113.0/24",     // documentation TEST-NET-3 (RFC 5737)
		"224.0.0.0/4",        // multicast (RFC 5771)
		"240.0.0.0/4",        // reserved (RFC 1112)
		"255.255.255.255/32", // limited broadcast (RFC 919)
		// IPv6. Everything outside 2000::/3 is denied anyway unless it
		// embeds an allowed IPv4 address; these entries say why.
		"::/128",         // unspecified (RFC 4291)
		"::1/128",        // loopback (RFC 4291)
		"64:ff9b:1::/48", // local-use NAT64 (RFC 8215)
		"100::/64",       // discard only (RFC 6666)
		"2001::/23",      // IETF protocol assignments: Teredo, benchmarking, ORCHID (RFC 2928)
		"2001:db8::/32",  // documentation (RFC 3849)
		"3fff::/20",      // documentation (RFC 9637)
		"5f00::/16",      // segment routing SIDs (RFC 9602)
		"fc00::/7",       // unique local (RFC 4193)
		"fe80::/10",      // link local (RFC 4291)
		"fec0::/10",      // deprecated site local (RFC 3879)
		"ff00::/8",       // multicast (RFC 4291)
	}
}

// DefaultDenied returns the ranges a PeerPolicy denies unless allowed
// explicitly (IPv6 outside 2000::/3 is denied too, see PeerPolicy), for
// documentation and logs. The slice is new each call.
func DefaultDenied() []netip.Prefix {
	list := defaultDenied()
	out := make([]netip.Prefix, len(list))
	for i, e := range list {
		out[i] = netip.MustParsePrefix(e)
	}
	return out
}

// v4Range is an IPv4 prefix as a value and a mask, compared in one step.
type v4Range struct{ addr, mask uint32 }

func (r v4Range) contains(ip uint32) bool { return ip&r.mask == r.addr }

// v6Range is an IPv6 prefix as two 64-bit halves and their masks.
type v6Range struct{ hi, lo, mhi, mlo uint64 }

func (r v6Range) contains(hi, lo uint64) bool { return hi&r.mhi == r.hi && lo&r.mlo == r.lo }

// embedKind says how an address carries an IPv4 address, if it does.
type embedKind uint8

const (
	embedNone   embedKind = iota
	embedIPv4             // a plain IPv4 address
	embedMapped           // ::ffff:a.b.c.d
	embedCompat           // ::a.b.c.d, except :: and ::1
	embedNAT64            // 64:ff9b::a.b.c.d
	embed6to4             // 2002:AABB:CCDD::/48
)

// nat64Hi is the upper half of the NAT64 well-known prefix 64:ff9b::/96.
const nat64Hi = 0x0064_ff9b_0000_0000

// PeerPolicy decides which peer addresses clients may relay to. A TURN
// server relays to any address a client names in XOR-PEER-ADDRESS, so
// without a policy it is an open proxy into the server's own networks (coturn CVE-2020-26262 and restund CVE-2021-21382
// were bypasses of such policies through 0.0.0.0, [::], ::ffff:127.0.0.1,
// ::127.0.0.1 and NAT64 forms).
//
// Allowed decides, in this order:
//
//  1. an explicit allow prefix that matches → allowed;
//  2. an explicit deny prefix that matches → denied;
//  3. a default-deny range that matches → denied;
//  4. otherwise allowed.
//
// IPv4 ranges, explicit or default, are checked against the IPv4 address
// embedded in an IPv6 one in these forms, so every spelling of an IPv4
// destination gets the same answer:
//
//   - IPv4-mapped ::ffff:a.b.c.d (RFC 4291 §2.5.5.2): a dual-stack socket
//     sends to a.b.c.d;
//   - IPv4-compatible ::a.b.c.d (RFC 4291 §2.5.5.1, deprecated), except ::
//     and ::1, which are IPv6's unspecified and loopback addresses;
//   - NAT64 64:ff9b::a.b.c.d (RFC 6052 §2.1): a NAT64 gateway sends to
//     a.b.c.d, in the gateway's network;
//   - 6to4 2002:AABB:CCDD::/48 (RFC 3056 §2): a 6to4 router tunnels to
//     AA.BB.CC.DD.
//
// Unless an explicit IPv6 prefix matches them, compatible and NAT64
// addresses are decided by their embedded IPv4 address alone, and mapped
// addresses always are. Other IPv6 addresses are denied outside 2000::/3, the only
// block IANA allocates for global unicast (everything else is reserved,
// unique-local, link-local, multicast or a special form), and inside it
// when they fall in a special-purpose range. Teredo (2001::/32) is denied
// as part of 2001::/23, whatever it embeds.
//
// IPv6 prefixes never match IPv4-mapped addresses: those are IPv4
// destinations, so "--allow-peer ::/0" does not open ::ffff:127.0.0.1.
//
// A PeerPolicy is immutable and safe for concurrent use. A nil *PeerPolicy
// allows nothing; NewPeerPolicy(nil, nil) is the default policy.
type PeerPolicy struct {
	allow4, deny4, default4 []v4Range
	allow6, deny6, default6 []v6Range
}

// NewPeerPolicy returns the default policy amended by explicit allow and
// deny prefixes; allow wins over deny, deny over the defaults. IPv4
// prefixes, including ones written in IPv4-mapped form (::ffff:a.b.c.d/n
// with n >= 96), also match the IPv4-mapped, IPv4-compatible, NAT64 and
// 6to4 forms of their addresses. Host bits are ignored and invalid (zero)
// prefixes skipped.
func NewPeerPolicy(allow, deny []netip.Prefix) *PeerPolicy {
	p := &PeerPolicy{}
	p.allow4, p.allow6 = ranges(allow)
	p.deny4, p.deny6 = ranges(deny)
	p.default4, p.default6 = ranges(DefaultDenied())
	// Allowed consults default6 only inside 2000::/3; the rest of the IPv6
	// defaults are denied by that rule already, so drop them from the scan.
	global := p.default6[:0]
	for _, r := range p.default6 {
		if r.hi>>61 == 0b001 {
			global = append(global, r)
		}
	}
	p.default6 = global
	return p
}

// ranges splits prefixes into IPv4 and IPv6 ranges.
func ranges(prefixes []netip.Prefix) (v4 []v4Range, v6 []v6Range) {
	for _, pfx := range prefixes {
		if !pfx.IsValid() {
			continue
		}
		addr, bits := pfx.Addr(), pfx.Bits()
		if addr.Is4In6() && bits >= 96 {
			addr, bits = addr.Unmap(), bits-96
		}
		if addr.Is4() {
			b := addr.As4()
			mask := uint32(0)
			if bits > 0 {
				mask = ^uint32(0) << (32 - bits)
			}
			v4 = append(v4, v4Range{addr: binary.BigEndian.Uint32(b[:]) & mask, mask: mask})
			continue
		}
		b := addr.As16()
		mhi, mlo := mask64(bits), mask64(bits-64)
		v6 = append(v6, v6Range{
			hi:  binary.BigEndian.Uint64(b[:8]) & mhi,
			lo:  binary.BigEndian.Uint64(b[8:]) & mlo,
			mhi: mhi,
			mlo: mlo,
		})
	}
	return v4, v6
}

// mask64 returns a 64-bit mask of the top bits bits, clamped to 0..64.
func mask64(bits int) uint64 {
	switch {
	case bits <= 0:
		return 0
	case bits >= 64:
		return ^uint64(0)
	}
	return ^uint64(0) << (64 - bits)
}

// embedded returns the IPv4 address that ip is or carries, and how.
func embedded(ip netip.Addr, hi, lo uint64) (uint32, embedKind) {
	switch {
	case ip.Is4():
		return uint32(lo), embedIPv4
	case hi == 0 && lo>>32 == 0xffff:
		return uint32(lo), embedMapped
	case hi == 0 && lo>>32 == 0 && lo > 1:
		return uint32(lo), embedCompat
	case hi == nat64Hi && lo>>32 == 0:
		return uint32(lo), embedNAT64
	case hi>>48 == 0x2002:
		return uint32(hi >> 16), embed6to4
	}
	return 0, embedNone
}

// EmbeddedIPv4 returns the IPv4 address ip is or stands for: ip itself,
// or the one carried by an IPv4-mapped, IPv4-compatible (not :: or ::1),
// NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address, the spellings the
// policy judges by their IPv4 address. ok is false for any other address.
// HOT: it allocates nothing.
func EmbeddedIPv4(ip netip.Addr) (v4 netip.Addr, ok bool) {
	b := ip.As16()
	u, kind := embedded(ip, binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]))
	if kind == embedNone || !ip.IsValid() {
		return netip.Addr{}, false
	}
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], u)
	return netip.AddrFrom4(a), true
}

// Allowed reports whether clients may relay to ip (zone ignored). HOT: it
// allocates nothing and takes no locks.
func (p *PeerPolicy) Allowed(ip netip.Addr) bool {
	if p == nil || !ip.IsValid() {
		return false
	}
	// As16 maps IPv4 to ::ffff:a.b.c.d and ignores the zone.
	b := ip.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	v4, kind := embedded(ip, hi, lo)
	// IPv6 prefixes apply to IPv6 destinations; a mapped address is not one.
	is6 := !ip.Is4() && kind != embedMapped

	if is6 && match6(p.allow6, hi, lo) || kind != embedNone && match4(p.allow4, v4) {
		return true
	}
	if is6 && match6(p.deny6, hi, lo) || kind != embedNone && match4(p.deny4, v4) {
		return false
	}
	if kind != embedNone && match4(p.default4, v4) {
		return false
	}
	switch kind {
	case embedIPv4, embedMapped, embedCompat, embedNAT64:
		return true // the embedded IPv4 address decided
	}
	// Global unicast is 2000::/3 (IANA IPv6 Address Space registry).
	if hi>>61 != 0b001 {
		return false
	}
	return !match6(p.default6, hi, lo)
}

func match4(rs []v4Range, ip uint32) bool {
	for _, r := range rs {
		if r.contains(ip) {
			return true
		}
	}
	return false
}

func match6(rs []v6Range, hi, lo uint64) bool {
	for _, r := range rs {
		if r.contains(hi, lo) {
			return true
		}
	}
	return false
}

// ParsePrefix parses an --allow-peer or --deny-peer value: an address
// ("192.0.2.7" as /32, "2001:db8::7" as /128) or a CIDR prefix
// ("10.0.0.0/8"); host bits are cleared. Zones are refused: a policy is
// about destinations, not interfaces.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("auth: peer prefix %q: want an address or CIDR such as 10.0.0.0/8: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("auth: peer prefix %q: want an address or CIDR such as 10.0.0.0/8: %w", s, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("auth: peer prefix %q: remove the zone %q", s, a.Zone())
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
