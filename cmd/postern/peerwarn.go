package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/postern/postern/auth"
)

// embeddingPrefixes are the IPv6 forms that carry an IPv4 address which
// the packet ends up at. The peer policy matches IPv4 ranges against the
// address they carry, but an explicit IPv6 allow prefix wins over the
// default-deny IPv4 ranges (auth.PeerPolicy), so an allow_peers entry that
// overlaps one of these re-opens, through it, IPv4 ranges denied by
// default (loopback, private networks, cloud metadata).
var embeddingPrefixes = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("2002::/16"), "6to4 (2002::/16, RFC 3056)"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64 (64:ff9b::/96, RFC 6052)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 (64:ff9b:1::/48, RFC 8215)"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (::/96, RFC 4291)"},
}

// allowPeerWarnings warns about allow_peers entries that overlap an
// IPv6 form embedding IPv4 addresses, e.g. ::/0 or 2000::/3. Entries that
// do not parse are left to the settings check.
func allowPeerWarnings(values []string) []string {
	var out []string
	for _, v := range values {
		p, err := auth.ParsePrefix(v)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
			continue // IPv4 (and IPv4-mapped) prefixes open only what they name
		}
		var forms []string
		for _, e := range embeddingPrefixes {
			if p.Overlaps(e.prefix) {
				forms = append(forms, e.what)
			}
		}
		if len(forms) > 0 {
			out = append(out, fmt.Sprintf("relay.allow_peers %s covers %s addresses, which carry IPv4 addresses: it re-opens, spelled that way, every IPv4 range denied by default (loopback, private networks, 169.254.169.254); allow only the IPv6 ranges you need, outside these", v, strings.Join(forms, ", ")))
		}
	}
	return out
}
