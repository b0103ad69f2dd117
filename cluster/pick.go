package cluster

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern/allocations"
)

// Choosing nodes. A node is a candidate when its entry is live (written
// within Ageing: a silent node is never chosen), it is ready (never
// draining) and it lists URLs. Among candidates those of the wanted region
// come first when there are any (else every region serves), then the least
// loaded: fewest allocations, then fewest relayed bits per second, then
// least CPU, then by name, so that equal nodes are chosen the same way on
// every node.

// Pick returns up to count nodes (at least 1) best for a client asking
// for region; an empty region is the one RegionRules give client, or
// none. It reads the registry as last read, never Redis.
func (n *Node) Pick(region string, client netip.Addr, count int) []Info {
	if region == "" && client.IsValid() {
		region = regionOf(n.cfg.RegionRules, client)
	}
	return pick(n.Nodes(), region, max(count, 1), time.Now().Add(-n.ageing), "")
}

func pick(nodes []Info, region string, count int, since time.Time, exclude string) []Info {
	nodes = slices.DeleteFunc(nodes, func(i Info) bool {
		return i.Node == exclude || i.State != StateReady || len(i.URLs) == 0 || i.Updated.Before(since)
	})
	slices.SortFunc(nodes, func(a, b Info) int {
		inA, inB := region != "" && a.Region == region, region != "" && b.Region == region
		switch {
		case inA && !inB:
			return -1
		case inB && !inA:
			return 1
		}
		return cmp.Or(cmp.Compare(a.Allocations, b.Allocations), cmp.Compare(a.BitsPerSecond, b.BitsPerSecond),
			cmp.Compare(a.CPU, b.CPU), strings.Compare(a.Node, b.Node))
	})
	return nodes[:min(count, len(nodes))]
}

// Alternate implements relay.Fleet: the best other node (in this node's
// region first) with an address for ft's transport and the client's
// family, from the registry as last read.
func (n *Node) Alternate(ft allocations.FiveTuple) (netip.AddrPort, bool) {
	for _, info := range pick(n.Nodes(), n.cfg.Region, len(n.Nodes()), time.Now().Add(-n.ageing), n.cfg.Node) {
		for _, addr := range Addresses(info.URLs, ft.Transport.String()) {
			if addrFamilyMatches(addr, ft.Client.Addr()) {
				return addr, true
			}
		}
	}
	return netip.AddrPort{}, false
}

// Addresses returns the transport addresses of the turn: and turns: URLs
// among urls whose host is an IP address, for transport "udp" (turn:
// ?transport=udp), "tcp" (turn: ?transport=tcp) or "tls" (turns:).
func Addresses(urls []string, transport string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, u := range urls {
		scheme, rest, ok := strings.Cut(u, ":")
		if !ok || scheme != "turn" && scheme != "turns" {
			continue
		}
		hostport, query, _ := strings.Cut(rest, "?")
		t := "udp"
		if strings.Contains(query, "transport=tcp") {
			t = "tcp"
		}
		if scheme == "turns" {
			t = "tls"
		}
		if t != transport {
			continue
		}
		if ap, err := netip.ParseAddrPort(hostport); err == nil {
			out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		} else if ip, err := netip.ParseAddr(strings.Trim(hostport, "[]")); err == nil {
			port := 3478
			if scheme == "turns" {
				port = 5349
			}
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(port))) // RFC 7065 §3: default ports
		}
	}
	return out
}
