//go:build ignore

// The kernel fast path of Postern's relay (package kernelpath): a TCX
// ingress program that relays a bound channel's datagrams without their
// going up to user space. A client's ChannelData to the server becomes
// the UDP datagram from the relayed transport address to the peer, and a
// peer's datagram to the relayed address becomes ChannelData to the
// client, both rewritten in the same packet buffer and sent on with
// bpf_redirect. Anything the tables do not hold, or hold expired, goes on
// to the stack unchanged (TCX_NEXT), where the relay's sockets handle it.
//
// IPv4 without IP options or fragments, and IPv6 without extension
// headers, one family on both sides; ChannelData only when its length
// fills the datagram exactly (UDP needs no padding, RFC 8656 §12.5); not
// a datagram whose checksum its local sender left to the device, nor a
// segmented send (both go up). User space installs an entry only for what it would relay
// itself (a live channel and permission, the peer policy, no bandwidth
// limit) and bounds it by the earliest expiry; the program checks that
// time per packet.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// TCX verdicts (linux/bpf.h since 6.6; the build's headers may be older).
#ifndef TCX_NEXT
#define TCX_NEXT -1
#define TCX_DROP 2
#endif

// Addresses and ports in network byte order; channel in host order.

// A client's ChannelData: from client to the server's listener address,
// on channel.
struct to_peer_key {
	__u32 client_ip, server_ip;
	__u16 client_port, server_port;
	__u16 channel, pad;
};

struct to_peer_val {
	__u32 relay_ip, peer_ip;
	__u16 relay_port, peer_port;
	__u32 slot; // in counts
	__u32 oif;  // the peer's route's interface (see find_route)
	__u32 pad;
	__u64 expires; // CLOCK_MONOTONIC ns
};

// A peer's datagram: from peer to the relayed address.
struct to_client_key {
	__u32 relay_ip, peer_ip;
	__u16 relay_port, peer_port;
};

struct to_client_val {
	__u32 server_ip, client_ip;
	__u16 server_port, client_port;
	__u16 channel, pad;
	__u32 slot;
	__u32 oif; // the client's route's interface
	__u64 expires;
};

// What an entry relayed, by its slot: apart from the entries, so that
// user space can move an entry's expiry without losing a count.
struct count {
	__u64 packets, bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, struct to_peer_key);
	__type(value, struct to_peer_val);
} to_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, struct to_client_key);
	__type(value, struct to_client_val);
} to_client SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE); // read by user space without a system call
	__uint(max_entries, 1 << 17);
	__type(key, __u32);
	__type(value, struct count);
} counts SEC(".maps");

// The same for IPv6 (all four addresses IPv6), sharing the counts' slots.
struct to_peer6_key {
	__u32 client_ip[4], server_ip[4];
	__u16 client_port, server_port;
	__u16 channel, pad;
};

struct to_peer6_val {
	__u32 relay_ip[4], peer_ip[4];
	__u16 relay_port, peer_port;
	__u32 slot;
	__u32 oif;
	__u32 pad;
	__u64 expires;
};

struct to_client6_key {
	__u32 relay_ip[4], peer_ip[4];
	__u16 relay_port, peer_port;
};

struct to_client6_val {
	__u32 server_ip[4], client_ip[4];
	__u16 server_port, client_port;
	__u16 channel, pad;
	__u32 slot;
	__u32 oif;
	__u64 expires;
};

// Not preallocated: most nodes relay few IPv6 channels, and a full
// preallocation would hold some 10 MB of kernel memory for nothing.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16);
	__type(key, struct to_peer6_key);
	__type(value, struct to_peer6_val);
} to_peer6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16);
	__type(key, struct to_client6_key);
	__type(value, struct to_client6_val);
} to_client6 SEC(".maps");

// add counts a packet of n payload bytes in slot.
static __always_inline void add(__u32 slot, __u16 n)
{
	struct count *c = bpf_map_lookup_elem(&counts, &slot);
	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, n);
	}
}

#define HDRS (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))
#define CD_HDR 4

// route is where a datagram from saddr:sport to daddr:dport of ip_len
// bytes leaves. oif is the interface of user space's route to daddr when
// it installed the entry (0: none, or an address of this host, which the
// sockets serve: a datagram from a relayed address to this host that came
// in on a card is a martian, its source being local). By the interface
// and next hop the routing table names now; the lookup needs
// the receiving interface to forward (net.ipv4.conf.IF.forwarding), and
// where it does not, by oif with the next hop and its link address left
// to the kernel's neighbour table (bpf_redirect_neigh, neigh set), the
// length checked against oif's MTU (len_diff: what the rewrite adds).
// false: no such route here (none, longer than the MTU, no neighbour
// entry yet), which user space then sends, the kernel learning the
// neighbour.
struct route {
	__u32 ifindex;
	__u32 neigh;
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
};

// fib_route is find_route's route lookup, for either family.
static __always_inline int fib_route(struct __sk_buff *skb, struct route *rt, struct bpf_fib_lookup *fib, __u32 oif,
				     __s32 len_diff)
{
	long rc = bpf_fib_lookup(skb, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		rt->ifindex = fib->ifindex;
		__builtin_memcpy(rt->smac, fib->smac, ETH_ALEN);
		__builtin_memcpy(rt->dmac, fib->dmac, ETH_ALEN);
		return 1;
	}
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED && oif) {
		__u32 mtu_len = 0;
		if (bpf_check_mtu(skb, oif, &mtu_len, len_diff, 0))
			return 0;
		rt->ifindex = oif;
		rt->neigh = 1;
		return 1;
	}
	return 0;
}

static __always_inline int find_route(struct __sk_buff *skb, struct route *rt, __u32 oif, __u32 saddr,
				      __u32 daddr, __u16 sport, __u16 dport, __u16 ip_len, __s32 len_diff)
{
	rt->neigh = 0;
	struct bpf_fib_lookup fib = {
		.family = 2, // AF_INET
		.l4_protocol = IPPROTO_UDP,
		.sport = sport,
		.dport = dport,
		.tot_len = ip_len,
		.ipv4_src = saddr,
		.ipv4_dst = daddr,
		.ifindex = skb->ifindex,
	};
	return fib_route(skb, rt, &fib, oif, len_diff);
}

// send hands the rewritten datagram to rt's interface.
static __always_inline int send(const struct route *rt)
{
	if (rt->neigh)
		return bpf_redirect_neigh(rt->ifindex, 0, 0, 0);
	return bpf_redirect(rt->ifindex, 0);
}

// pull brings the first n bytes into the linear part of the buffer where
// they are not (a sender with UDP_SEGMENT, or a driver, may leave the
// payload in pages from the first byte after the UDP header), so that the
// headers and a ChannelData header can be read; false if it cannot. The
// caller reloads its packet pointers.
static __always_inline int pull(struct __sk_buff *skb, __u32 n)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	if (data + n <= end || skb->len < n)
		return 1;
	return bpf_skb_pull_data(skb, n) == 0;
}

// channel_data_len is the length of the ChannelData message at cd (its
// header in the packet) that fills a UDP datagram of udp_len bytes
// exactly, or 0 if cd is not one (another message, padded, empty).
static __always_inline __u16 channel_data_len(const __u8 *cd, __u16 udp_len)
{
	if ((cd[0] & 0xc0) != 0x40)
		return 0;
	__u16 n = (__u16)cd[2] << 8 | cd[3];
	if (udp_len != sizeof(struct udphdr) + CD_HDR + n)
		return 0;
	return n;
}

// rewrite fills in the Ethernet, IP and UDP headers (and with cd_len the
// ChannelData header) of the datagram of udp_len bytes from saddr:sport
// to daddr:dport, and sends it on by rt. The UDP checksum is left out
// (zero: allowed over IPv4, RFC 768), so that the payload is not summed
// here.
static __always_inline int rewrite(struct __sk_buff *skb, const struct route *rt, __u32 saddr, __u32 daddr,
				   __u16 sport, __u16 dport, __u16 udp_len, __u16 channel, __u16 cd_len)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	if (data + HDRS > end)
		return TCX_DROP;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);

	// With the neighbour table the kernel writes the link header; the
	// received one stays until then (a multicast destination there would
	// make bpf_redirect_neigh drop the packet).
	if (!rt->neigh) {
		__builtin_memcpy(eth->h_dest, rt->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, rt->smac, ETH_ALEN);
	}
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->tot_len = bpf_htons(sizeof(struct iphdr) + udp_len);
	ip->ttl = 64;
	// DF, as the relay's sockets send (Linux's IP_PMTUDISC_WANT): the
	// route lookup has checked the length against the path's MTU.
	ip->frag_off = bpf_htons(0x4000);
	ip->check = 0;
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(struct iphdr), 0);
	if (sum < 0)
		return TCX_DROP;
	__u32 s = (__u32)sum;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	ip->check = (__u16)~s;

	udp->source = sport;
	udp->dest = dport;
	udp->len = bpf_htons(udp_len);
	udp->check = 0;
	if (cd_len) {
		__u16 *cd = (void *)(udp + 1);
		if ((void *)(cd + 2) > end)
			return TCX_DROP;
		cd[0] = bpf_htons(channel);
		cd[1] = bpf_htons(cd_len);
	}
	return send(rt);
}

// relay4 relays an IPv4 datagram of a binding.
static __always_inline int relay4(struct __sk_buff *skb)
{
	if (!pull(skb, HDRS + CD_HDR))
		return TCX_NEXT;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if (data + HDRS > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TCX_NEXT;
	struct iphdr *ip = (void *)(eth + 1);
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
		return TCX_NEXT;
	struct udphdr *udp = (void *)(ip + 1);
	__u16 udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(struct udphdr) || bpf_ntohs(ip->tot_len) != sizeof(struct iphdr) + udp_len)
		return TCX_NEXT;
	__u64 now = bpf_ktime_get_ns();

	struct to_client_key ck = {
		.relay_ip = ip->daddr, .peer_ip = ip->saddr, .relay_port = udp->dest, .peer_port = udp->source,
	};
	struct to_client_val *cv = bpf_map_lookup_elem(&to_client, &ck);
	if (cv) {
		__u16 n = udp_len - sizeof(struct udphdr);
		if (cv->expires <= now || n == 0 || udp_len > 0xffff - CD_HDR)
			return TCX_NEXT;
		__u32 saddr = cv->server_ip, daddr = cv->client_ip;
		__u16 sport = cv->server_port, dport = cv->client_port, channel = cv->channel;
		__u32 slot = cv->slot;
		struct route rt;
		if (!find_route(skb, &rt, cv->oif, saddr, daddr, sport, dport, sizeof(struct iphdr) + udp_len + CD_HDR, CD_HDR))
			return TCX_NEXT;
		if (bpf_skb_adjust_room(skb, CD_HDR, BPF_ADJ_ROOM_NET, 0))
			return TCX_NEXT;
		add(slot, n);
		// The 4 bytes came in after the IP header: the UDP header and
		// the ChannelData header are written over the first 12.
		return rewrite(skb, &rt, saddr, daddr, sport, dport, udp_len + CD_HDR, channel, n);
	}

	if (data + HDRS + CD_HDR > end)
		return TCX_NEXT;
	__u8 *cd = (void *)(udp + 1);
	__u16 cd_len = channel_data_len(cd, udp_len);
	if (cd_len == 0)
		return TCX_NEXT;
	struct to_peer_key pk = {
		.client_ip = ip->saddr, .server_ip = ip->daddr, .client_port = udp->source, .server_port = udp->dest,
		.channel = (__u16)cd[0] << 8 | cd[1],
	};
	struct to_peer_val *pv = bpf_map_lookup_elem(&to_peer, &pk);
	if (!pv || pv->expires <= now)
		return TCX_NEXT;
	__u32 saddr = pv->relay_ip, daddr = pv->peer_ip;
	__u16 sport = pv->relay_port, dport = pv->peer_port;
	__u32 slot = pv->slot;
	struct route rt;
	if (!find_route(skb, &rt, pv->oif, saddr, daddr, sport, dport, sizeof(struct iphdr) + sizeof(struct udphdr) + cd_len,
			-CD_HDR))
		return TCX_NEXT;
	// The 4 bytes after the IP header go (the old UDP ports): the UDP
	// header is written over what is left of it and the ChannelData
	// header.
	if (bpf_skb_adjust_room(skb, -CD_HDR, BPF_ADJ_ROOM_NET, 0))
		return TCX_NEXT;
	add(slot, cd_len);
	return rewrite(skb, &rt, saddr, daddr, sport, dport, sizeof(struct udphdr) + cd_len, 0, 0);
}

#define HDRS6 (sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + sizeof(struct udphdr))
#define UDP_CHECK6 (sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + 6) // offset of the UDP checksum

// find_route6 is find_route for IPv6 (the lookup needs
// net.ipv6.conf.all.forwarding; oif otherwise, as for IPv4).
static __always_inline int find_route6(struct __sk_buff *skb, struct route *rt, __u32 oif, const __u32 *saddr,
				       const __u32 *daddr, __u16 sport, __u16 dport, __u16 ip_len, __s32 len_diff)
{
	rt->neigh = 0;
	struct bpf_fib_lookup fib = {
		.family = 10, // AF_INET6
		.l4_protocol = IPPROTO_UDP,
		.sport = sport,
		.dport = dport,
		.tot_len = ip_len,
		.ifindex = skb->ifindex,
	};
	__builtin_memcpy(fib.ipv6_src, saddr, 16);
	__builtin_memcpy(fib.ipv6_dst, daddr, 16);
	return fib_route(skb, rt, &fib, oif, len_diff);
}

// What of an IPv6 UDP datagram its checksum covers and a relay changes:
// the pseudo-header's addresses and length, and the UDP header's ports
// and length with the 4 bytes after it (a ChannelData header, or zero
// where there is none).
struct pseudo6 {
	__u32 saddr[4], daddr[4];
	__u32 len;
};

struct udp_words {
	__u16 sport, dport, len, zero;
	__u16 cd_channel, cd_len;
};

// rewrite6 is rewrite for IPv6. Unlike IPv4's, the UDP checksum is
// mandatory (RFC 8200 §8.1): the received one is carried over by the
// difference of what changed, pdiff for the pseudo-header and hdiff for
// the header and ChannelData words. bpf_l4_csum_replace applies hdiff
// only to a complete checksum: a partial one (a local sender's, the
// interface to finish it) covers the pseudo-header alone.
static __always_inline int rewrite6(struct __sk_buff *skb, const struct route *rt, const struct pseudo6 *np,
				    const struct udp_words *nw, __u16 check, __u32 pdiff, __u32 hdiff)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	if (data + HDRS6 + CD_HDR > end)
		return TCX_DROP;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip6 + 1);
	if (!rt->neigh) {
		__builtin_memcpy(eth->h_dest, rt->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, rt->smac, ETH_ALEN);
	}
	*(__u32 *)ip6 = bpf_htonl(0x60000000); // version 6, no traffic class or flow label
	ip6->payload_len = nw->len;
	ip6->hop_limit = 64;
	__builtin_memcpy(&ip6->saddr, np->saddr, 16);
	__builtin_memcpy(&ip6->daddr, np->daddr, 16);
	udp->source = nw->sport;
	udp->dest = nw->dport;
	udp->len = nw->len;
	udp->check = check;
	__u16 *cd = (void *)(udp + 1);
	if (nw->cd_len) {
		cd[0] = nw->cd_channel;
		cd[1] = nw->cd_len;
	}
	if (bpf_l4_csum_replace(skb, UDP_CHECK6, 0, hdiff, 0) ||
	    bpf_l4_csum_replace(skb, UDP_CHECK6, 0, pdiff, BPF_F_PSEUDO_HDR))
		return TCX_DROP;
	// Zero is "no checksum", which IPv6 forbids; 0xffff is the same sum.
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (data + UDP_CHECK6 + 2 > end)
		return TCX_DROP;
	__u16 *sum = data + UDP_CHECK6;
	if (*sum == 0)
		*sum = 0xffff;
	return send(rt);
}

// relay6 relays an IPv6 datagram of a binding: no extension headers, a
// UDP checksum present.
static __always_inline int relay6(struct __sk_buff *skb)
{
	if (!pull(skb, HDRS6 + CD_HDR))
		return TCX_NEXT;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if (data + HDRS6 > end || eth->h_proto != bpf_htons(ETH_P_IPV6))
		return TCX_NEXT;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	if (ip6->nexthdr != IPPROTO_UDP)
		return TCX_NEXT;
	struct udphdr *udp = (void *)(ip6 + 1);
	__u16 udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(struct udphdr) || bpf_ntohs(ip6->payload_len) != udp_len || udp->check == 0)
		return TCX_NEXT;
	__u64 now = bpf_ktime_get_ns();
	struct pseudo6 op = {.len = bpf_htonl(udp_len)}, np = {};
	__builtin_memcpy(op.saddr, &ip6->saddr, 16);
	__builtin_memcpy(op.daddr, &ip6->daddr, 16);
	struct udp_words ow = {.sport = udp->source, .dport = udp->dest, .len = udp->len}, nw = {};
	__u16 check = udp->check;

	struct to_client6_key ck = {.relay_port = udp->dest, .peer_port = udp->source};
	__builtin_memcpy(ck.relay_ip, op.daddr, 16);
	__builtin_memcpy(ck.peer_ip, op.saddr, 16);
	struct to_client6_val *cv = bpf_map_lookup_elem(&to_client6, &ck);
	if (cv) {
		__u16 n = udp_len - sizeof(struct udphdr);
		if (cv->expires <= now || n == 0 || udp_len > 0xffff - CD_HDR)
			return TCX_NEXT;
		__builtin_memcpy(np.saddr, cv->server_ip, 16);
		__builtin_memcpy(np.daddr, cv->client_ip, 16);
		np.len = bpf_htonl(udp_len + CD_HDR);
		nw.sport = cv->server_port;
		nw.dport = cv->client_port;
		nw.len = bpf_htons(udp_len + CD_HDR);
		nw.cd_channel = bpf_htons(cv->channel);
		nw.cd_len = bpf_htons(n);
		__u32 slot = cv->slot;
		struct route rt;
		if (!find_route6(skb, &rt, cv->oif, np.saddr, np.daddr, nw.sport, nw.dport,
				 sizeof(struct ipv6hdr) + udp_len + CD_HDR, CD_HDR))
			return TCX_NEXT;
		__s64 pdiff = bpf_csum_diff((__be32 *)&op, sizeof(op), (__be32 *)&np, sizeof(np), 0);
		__s64 hdiff = bpf_csum_diff((__be32 *)&ow, sizeof(ow), (__be32 *)&nw, sizeof(nw), 0);
		if (pdiff < 0 || hdiff < 0)
			return TCX_NEXT;
		if (bpf_skb_adjust_room(skb, CD_HDR, BPF_ADJ_ROOM_NET, 0))
			return TCX_NEXT;
		add(slot, n);
		return rewrite6(skb, &rt, &np, &nw, check, (__u32)pdiff, (__u32)hdiff);
	}

	if (data + HDRS6 + CD_HDR > end)
		return TCX_NEXT;
	__u8 *cd = (void *)(udp + 1);
	__u16 cd_len = channel_data_len(cd, udp_len);
	if (cd_len == 0)
		return TCX_NEXT;
	struct to_peer6_key pk = {
		.client_port = udp->source, .server_port = udp->dest, .channel = (__u16)cd[0] << 8 | cd[1],
	};
	__builtin_memcpy(pk.client_ip, op.saddr, 16);
	__builtin_memcpy(pk.server_ip, op.daddr, 16);
	ow.cd_channel = *(__u16 *)cd;
	ow.cd_len = *(__u16 *)(cd + 2);
	struct to_peer6_val *pv = bpf_map_lookup_elem(&to_peer6, &pk);
	if (!pv || pv->expires <= now)
		return TCX_NEXT;
	__builtin_memcpy(np.saddr, pv->relay_ip, 16);
	__builtin_memcpy(np.daddr, pv->peer_ip, 16);
	np.len = bpf_htonl(sizeof(struct udphdr) + cd_len);
	nw.sport = pv->relay_port;
	nw.dport = pv->peer_port;
	nw.len = bpf_htons(sizeof(struct udphdr) + cd_len);
	__u32 slot = pv->slot;
	struct route rt;
	if (!find_route6(skb, &rt, pv->oif, np.saddr, np.daddr, nw.sport, nw.dport,
			 sizeof(struct ipv6hdr) + sizeof(struct udphdr) + cd_len, -CD_HDR))
		return TCX_NEXT;
	__s64 pdiff = bpf_csum_diff((__be32 *)&op, sizeof(op), (__be32 *)&np, sizeof(np), 0);
	__s64 hdiff = bpf_csum_diff((__be32 *)&ow, sizeof(ow), (__be32 *)&nw, sizeof(nw), 0);
	if (pdiff < 0 || hdiff < 0)
		return TCX_NEXT;
	if (bpf_skb_adjust_room(skb, -CD_HDR, BPF_ADJ_ROOM_NET, 0))
		return TCX_NEXT;
	add(slot, cd_len);
	return rewrite6(skb, &rt, &np, &nw, check, (__u32)pdiff, (__u32)hdiff);
}

// The kernel's sk_buff, for its checksum state (CO-RE: the field is
// found in the running kernel's BTF).
struct sk_buff___kp {
	__u8 ip_summed : 2;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

#define CHECKSUM_PARTIAL 3

// partial reports a datagram whose UDP checksum a local sender left to
// the device (CHECKSUM_PARTIAL: it arrived over loopback, veth, or a
// virtio device from a neighbour): the device would sum from the UDP
// header's old place, which moving the headers by 4 bytes makes wrong,
// and no helper moves it along. Such datagrams go up to the sockets.
static __always_inline int partial(struct __sk_buff *ctx)
{
	struct sk_buff___kp *skb = bpf_cast_to_kern_ctx(ctx);
	return BPF_CORE_READ_BITFIELD(skb, ip_summed) == CHECKSUM_PARTIAL;
}

SEC("tc")
int postern_relay(struct __sk_buff *skb)
{
	// A segmented send (UDP_SEGMENT, or GRO) is several datagrams in one
	// buffer, which one rewrite cannot relay (bpf_skb_adjust_room refuses
	// it too): up to the sockets, before any other work.
	if (skb->gso_size || partial(skb))
		return TCX_NEXT;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return relay4(skb);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return relay6(skb);
	return TCX_NEXT;
}
