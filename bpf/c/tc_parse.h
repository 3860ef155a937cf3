/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Part of tc.c (included by it alone, after its reasons): the packet
 * tc.c decides on, and its parsing from IPv4 and IPv6 headers. */
#pragma once

/* An IPv4 or IPv6 address (IPv4 in the first 4 bytes, the rest zero). */
union addr {
	__be32 ip4;
	__u8 ip6[16];
	__u32 w[4];
};

struct pkt {
	union addr saddr;
	union addr daddr;
	__be16 sport;
	__be16 dport;  /* for policy: 0 for ICMP */
	__be16 ct_sport;
	__be16 ct_dport;
	__u8 family;
	__u8 proto;
	__u8 tcp_flags;
};

/* parse_l4 reads the L4 header at off of protocol p->proto: ports, TCP
 * flags, the ICMP echo identifier (icmp_echo: the echo request and reply
 * types). Returns 0 or a drop reason. */
static __always_inline int parse_l4(struct __sk_buff *skb, struct pkt *p,
				    __u32 off, __u8 icmp_proto,
				    __u8 echo_req, __u8 echo_rep)
{
	__u8 l4[14];

	switch (p->proto) {
	case IPPROTO_TCP:
		if (bpf_skb_load_bytes(skb, off, l4, 14) < 0)
			return REASON_DROP_INVALID;
		p->tcp_flags = l4[13];
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, off, l4, 4) < 0)
			return REASON_DROP_INVALID;
		break;
	default:
		if (p->proto != icmp_proto)
			return 0;
		if (bpf_skb_load_bytes(skb, off, l4, 8) < 0)
			return REASON_DROP_INVALID;
		/* echo request/reply: the identifier keys the flow both ways */
		if (l4[0] == echo_req || l4[0] == echo_rep) {
			__builtin_memcpy(&p->ct_sport, &l4[4], 2);
			p->ct_dport = p->ct_sport;
		}
		/* ICMPv6 link control, never application data: multicast
		 * listener queries and reports (130-132, 143) and router and
		 * neighbour discovery (133-137), without which IPv6 does not
		 * work on the link. Passed whatever the policy. */
		if (icmp_proto == IPPROTO_ICMPV6 &&
		    ((l4[0] >= 130 && l4[0] <= 137) || l4[0] == 143))
			return REASON_ICMP6_LINK;
		return 0;
	}
	__builtin_memcpy(&p->sport, &l4[0], 2);
	__builtin_memcpy(&p->dport, &l4[2], 2);
	p->ct_sport = p->sport;
	p->ct_dport = p->dport;
	return 0;
}

/* parse4 fills p from an IPv4 packet; returns 0 or a reason. */
static __always_inline int parse4(struct __sk_buff *skb, struct pkt *p)
{
	__u8 iph[20];
	__u16 frag;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, iph, sizeof(iph)) < 0)
		return REASON_DROP_INVALID;
	if ((iph[0] >> 4) != 4 || (iph[0] & 0xf) < 5)
		return REASON_DROP_INVALID;
	p->family = AF_INET4;
	p->proto = iph[9];
	__builtin_memcpy(&p->saddr.ip4, &iph[12], 4);
	__builtin_memcpy(&p->daddr.ip4, &iph[16], 4);
	frag = ((__u16)iph[6] << 8 | iph[7]) & 0x1fff;
	if (frag)
		return 0; /* non-first fragment: no L4 header, ports 0 */
	return parse_l4(skb, p, ETH_HLEN + (iph[0] & 0xf) * 4, IPPROTO_ICMP, 8, 0);
}

/* IPv6 extension headers parse6 walks; more of them is refused. */
#define IPV6_MAX_EXT_HDRS 6
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_NONE 59
#define NEXTHDR_DEST 60

/* parse6 fills p from an IPv6 packet, walking its extension headers
 * (hop-by-hop, routing, destination options, fragment, authentication) to
 * the L4 header; returns 0 or a reason. A packet with more extension headers
 * than IPV6_MAX_EXT_HDRS is dropped, never passed unparsed. */
static __always_inline int parse6(struct __sk_buff *skb, struct pkt *p)
{
	__u8 ip6h[40];
	__u8 ext[4];
	__u32 off = ETH_HLEN + 40;
	__u8 nexthdr;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, ip6h, sizeof(ip6h)) < 0)
		return REASON_DROP_INVALID;
	if ((ip6h[0] >> 4) != 6)
		return REASON_DROP_INVALID;
	p->family = AF_INET6;
	nexthdr = ip6h[6];
	__builtin_memcpy(p->saddr.ip6, &ip6h[8], 16);
	__builtin_memcpy(p->daddr.ip6, &ip6h[24], 16);

#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT_HDRS; i++) {
		switch (nexthdr) {
		case NEXTHDR_HOP:
		case NEXTHDR_ROUTING:
		case NEXTHDR_DEST:
			if (bpf_skb_load_bytes(skb, off, ext, 2) < 0)
				return REASON_DROP_INVALID;
			nexthdr = ext[0];
			off += ((__u32)ext[1] + 1) * 8;
			continue;
		case NEXTHDR_AUTH:
			if (bpf_skb_load_bytes(skb, off, ext, 2) < 0)
				return REASON_DROP_INVALID;
			nexthdr = ext[0];
			off += ((__u32)ext[1] + 2) * 4;
			continue;
		case NEXTHDR_FRAGMENT:
			if (bpf_skb_load_bytes(skb, off, ext, 4) < 0)
				return REASON_DROP_INVALID;
			nexthdr = ext[0];
			off += 8;
			if (((__u16)ext[2] << 8 | ext[3]) & 0xfff8) {
				p->proto = nexthdr;
				return 0; /* non-first fragment: no L4 header, ports 0 */
			}
			continue;
		default:
			p->proto = nexthdr;
			return parse_l4(skb, p, off, IPPROTO_ICMPV6, 128, 129);
		}
	}
	switch (nexthdr) {
	case NEXTHDR_HOP:
	case NEXTHDR_ROUTING:
	case NEXTHDR_DEST:
	case NEXTHDR_AUTH:
	case NEXTHDR_FRAGMENT:
		return REASON_DROP_EXT_HDR;
	}
	p->proto = nexthdr;
	return parse_l4(skb, p, off, IPPROTO_ICMPV6, 128, 129);
}
