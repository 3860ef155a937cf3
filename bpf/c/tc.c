//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Policy enforcement on the host side of each endpoint's veth (TCX). */
#include "common.h"
#include "lb.h"

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

#define VERDICT_ALLOWED 0
#define VERDICT_DROPPED 1

/* Reasons; keep in sync with reason.go. */
#define REASON_POLICY_ALLOW 1    /* new flow allowed by a rule */
#define REASON_CT_ESTABLISHED 2  /* packet of a known flow, original direction */
#define REASON_CT_REPLY 3        /* reply of a known flow */
#define REASON_NOT_ENFORCED 4    /* new flow, direction not enforced */
#define REASON_NOT_IP 5          /* ARP and other non-IP: passed */
#define REASON_ICMP6_LINK 6      /* ICMPv6 neighbour discovery, MLD: passed */
#define REASON_DROP_POLICY 16    /* no rule allows the flow (default deny) */
#define REASON_DROP_POLICY_DENY 17 /* a deny rule matches */
/* 18 was "IPv6 in an enforced direction" (unsupported-l3): no longer emitted */
#define REASON_DROP_INVALID 19   /* truncated or malformed header */
#define REASON_DROP_EXT_HDR 20   /* IPv6 extension headers beyond what is parsed */
#define REASON_MAX 32

#define CT_FLAG_CLOSING 1 /* TCP FIN or RST seen */
#define CT_FLAG_SEEN_REPLY 2
#define CT_FLAG_TRACED 4 /* the flow's first packet was reported (event) */

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* Settings, rewritten by the loader (Options). */
volatile const __u64 ct_timeout_tcp_ns = 21600ULL * 1000000000ULL;
volatile const __u64 ct_timeout_other_ns = 60ULL * 1000000000ULL;
volatile const __u64 ct_timeout_closing_ns = 10ULL * 1000000000ULL;
/* Emit a verdict event for 1 in trace_sample allowed new flows, and for the
 * first reply of each of those; 0 = never. */
volatile const __u32 trace_sample = 1;

/* ipcache: single addresses (/32, /128: pods, nodes) in the hash
 * ipcache_hosts, whose update and lookup cost does not grow with the number
 * of entries; prefixes in the LPM trie ipcache. The key is the same in both:
 * the prefix covers family and pad (32 bits) and then the address bits, so
 * IPv4 and IPv6 share one trie. A lookup tries the hash (the longest
 * possible prefix), then the trie. */
struct ipcache_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	union {
		__be32 ip4;
		__u8 ip6[16];
	};
};

struct ipcache_value {
	__u32 identity;
	__u8 flags;
	__u8 host_family; /* 0: no host IP, AF_INET4 or AF_INET6 */
	__u8 pad[2];
	__u8 host_ip[16]; /* tunnel endpoint; IPv4 in the first 4 bytes */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ipcache_hosts SEC(".maps");

/* cidr_ids: the CIDR prefixes of the policies and their CIDR identities, for
 * rules that select peers by address whatever their own identity. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, __u32);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cidr_ids SEC(".maps");

/* endpoints: host-side ifindex -> endpoint id, written by AttachEndpoint. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u16);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

struct ep_config {
	__u32 identity;
	__u8 enforce_ingress;
	__u8 enforce_egress;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct ep_config);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ep_config SEC(".maps");

/* policy_gen: endpoint id -> active generation of its policy entries, and
 * per direction a mask of the kinds of entries present (bit p <= 16: port
 * blocks of prefix length p, bit 0 = any port; bit 17: any protocol). A new
 * rule set is written under the next generation and activated by one update
 * of this map, so a replacement never has a window without rules. */
#define POLICY_MASK_ANY_PROTO (1u << 17)
/* Bit 18: the direction has rules that select peers by address (Kubernetes
 * NetworkPolicy ipBlock): their entries are keyed by the CIDR identity with
 * IDENTITY_BY_ADDR set, probed with the CIDR identity of the peer's address
 * (cidr_ids) when no entry of the peer's own identity allows the flow. */
#define POLICY_MASK_BY_ADDR (1u << 18)
#define IDENTITY_BY_ADDR (1u << 31)
struct policy_gen_value {
	__u8 gen;
	__u8 pad[3];
	__u32 mask[2]; /* by direction */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct policy_gen_value);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy_gen SEC(".maps");

/* policy: hash of (endpoint, direction, generation, peer identity, protocol,
 * port prefix length, masked destination port). Port ranges are split into
 * aligned power-of-two blocks by the loader. A lookup probes only the prefix
 * lengths the endpoint uses (the mask), most specific first, for the exact
 * identity and for identity 0: a fixed number of hash lookups, whatever the
 * number of rules. */
struct policy_key {
	__be16 ep_id;
	__u8 dir;
	__u8 gen;
	__u32 identity;
	__u8 proto;   /* 0: any protocol (then plen and dport are 0) */
	__u8 plen;    /* port prefix length, 0 (any port) .. 16 */
	__be16 dport; /* masked to plen bits */
};

struct policy_value {
	__u8 deny;
	__u8 pad[7];
	__u64 packets; /* new flows decided by this entry */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy SEC(".maps");

/* ct: connection tracking, IPv4 and IPv6. An entry is created by the first
 * allowed packet of a flow at one endpoint in one direction; its key is that
 * packet's tuple (IPv4 addresses in the first 4 bytes, the rest zero). */
union addr {
	__be32 ip4;
	__u8 ip6[16];
	__u32 w[4];
};

struct ct_key {
	union addr saddr;
	union addr daddr;
	__be16 sport;
	__be16 dport;
	__u16 ep_id;
	__u8 proto;
	__u8 dir;
	__u8 family;
	__u8 pad[3];
};

struct ct_value {
	__u64 last_seen; /* bpf_ktime_get_ns */
	__u64 packets;
	__u64 bytes;
	__u32 peer_identity;
	__u8 flags;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ct SEC(".maps");

struct metrics_value {
	__u64 packets;
	__u64 bytes;
};

/* metrics: index = dir * REASON_MAX + reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(max_entries, 2 * REASON_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} metrics SEC(".maps");

struct event {
	__u64 ktime;
	__u32 src_identity;
	__u32 dst_identity;
	union addr saddr;
	union addr daddr;
	__be16 sport;
	__be16 dport;
	__u16 ep_id;
	__u8 proto;
	__u8 dir;
	__u8 verdict;
	__u8 reason;
	__u8 family;
	__u8 tcp_flags; /* of a TCP packet, as in its header; 0 otherwise */
	__u32 ifindex;
	__u32 pkt_len;
	__u8 flags; /* EVENT_FLAG_* */
	__u8 pad[3];
};

/* event_service is the record of an event with EVENT_FLAG_SERVICE: the
 * event and the Service frontend the packet's socket asked for, which
 * socket load balancing translated into daddr:dport (IPv4 in the first 4
 * bytes when family is AF_INET4). Other events keep the shorter record, so
 * the ring buffer holds as many of them as before. */
struct event_service {
	struct event ev;
	union addr fe_addr;
	__be16 fe_port;
	__u8 pad[6];
};

#define EVENT_FLAG_REPLY 1   /* the packet is a reply of a tracked flow */
#define EVENT_FLAG_SERVICE 2 /* the record is a struct event_service */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

/* events_lost: events the ring buffer had no room for (per CPU), read by
 * the agent as lost events. Not pinned: it counts since this load. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} events_lost SEC(".maps");

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

static __always_inline void count(__u8 dir, __u8 reason, __u32 len)
{
	__u32 idx = (__u32)dir * REASON_MAX + reason;
	struct metrics_value *m = bpf_map_lookup_elem(&metrics, &idx);

	if (m) {
		m->packets++;
		m->bytes += len;
	}
}

static __always_inline void ipcache_key_of(const struct pkt *p,
					   const union addr *a,
					   struct ipcache_key *k)
{
	if (p->family == AF_INET6) {
		k->prefixlen = 32 + 128;
		k->family = AF_INET6;
		__builtin_memcpy(k->ip6, a->ip6, 16);
	} else {
		k->prefixlen = 32 + 32;
		k->family = AF_INET4;
		k->ip4 = a->ip4;
	}
}

static __always_inline __u32 lookup_identity(const struct pkt *p,
					       const union addr *a)
{
	struct ipcache_key k = {};
	struct ipcache_value *v;

	ipcache_key_of(p, a, &k);
	v = bpf_map_lookup_elem(&ipcache_hosts, &k);
	if (!v)
		v = bpf_map_lookup_elem(&ipcache, &k);
	return v ? v->identity : IDENTITY_WORLD;
}

/* frontend_of finds the Service frontend that socket load balancing
 * translated into p's destination, from the reverse translation sock.c
 * recorded for the packet's socket (lb.h). Only a packet leaving the
 * client's own endpoint still carries its socket (the veth keeps skb->sk;
 * routing in the node orphans it), so only egress events are looked up,
 * and only when one is emitted: two map lookups at most, no cost on the
 * packets of a tracked flow. */
static __always_inline int frontend_of(struct __sk_buff *skb, const struct pkt *p,
				       union addr *fe, __be16 *fe_port)
{
	__u64 cookie;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return 0;
	cookie = bpf_get_socket_cookie(skb);
	if (!cookie)
		return 0;
	if (p->family == AF_INET6)
		return revnat6_lookup(cookie, (const union addr6 *)&p->daddr, p->dport,
				      (union addr6 *)fe, fe_port);
	return revnat4(cookie, p->daddr.ip4, p->dport, &fe->ip4, fe_port);
}

static __always_inline void fill_event(struct event *e, struct __sk_buff *skb,
				       const struct pkt *p, __u16 ep_id, __u32 own_id,
				       __u32 peer_id, __u8 dir, __u8 verdict,
				       __u8 reason, __u8 flags)
{
	e->ktime = bpf_ktime_get_ns();
	if (dir == DIR_EGRESS) {
		e->src_identity = own_id;
		e->dst_identity = peer_id;
	} else {
		e->src_identity = peer_id;
		e->dst_identity = own_id;
	}
	e->saddr = p->saddr;
	e->daddr = p->daddr;
	e->family = p->family;
	e->sport = p->sport;
	e->dport = p->dport;
	e->ep_id = ep_id;
	e->proto = p->proto;
	e->dir = dir;
	e->verdict = verdict;
	e->reason = reason;
	e->tcp_flags = p->proto == IPPROTO_TCP ? p->tcp_flags : 0;
	e->ifindex = skb->ifindex;
	e->pkt_len = skb->len;
	e->flags = flags;
	e->pad[0] = 0;
	e->pad[1] = 0;
	e->pad[2] = 0;
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&events_lost, &zero);

	if (lost)
		*lost += 1;
}

static __always_inline void emit(struct __sk_buff *skb, const struct pkt *p,
				 __u16 ep_id, __u32 own_id, __u32 peer_id,
				 __u8 dir, __u8 verdict, __u8 reason, __u8 flags)
{
	union addr fe = {};
	__be16 fe_port = 0;

	if (dir == DIR_EGRESS && frontend_of(skb, p, &fe, &fe_port)) {
		struct event_service *es = bpf_ringbuf_reserve(&events, sizeof(*es), 0);

		if (!es) {
			count_lost();
			return;
		}
		fill_event(&es->ev, skb, p, ep_id, own_id, peer_id, dir, verdict,
			   reason, flags | EVENT_FLAG_SERVICE);
		es->fe_addr = fe;
		es->fe_port = fe_port;
		__builtin_memset(es->pad, 0, sizeof(es->pad));
		bpf_ringbuf_submit(es, 0);
		return;
	}

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_lost();
		return;
	}
	fill_event(e, skb, p, ep_id, own_id, peer_id, dir, verdict, reason, flags);
	bpf_ringbuf_submit(e, 0);
}

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

/* policy_match returns the most specific entry for k's identity, or NULL. */
static __always_inline struct policy_value *
policy_match(struct policy_key *k, __u32 mask, __u16 dport)
{
	struct policy_value *v;
	__u8 proto = k->proto;

#pragma unroll
	for (int plen = 16; plen >= 0; plen--) {
		if (!(mask & (1u << plen)))
			continue;
		k->proto = proto;
		k->plen = plen;
		k->dport = plen ? bpf_htons(dport & (0xffff << (16 - plen))) : 0;
		v = bpf_map_lookup_elem(&policy, k);
		if (v)
			return v;
	}
	if (mask & POLICY_MASK_ANY_PROTO) {
		k->proto = 0;
		k->plen = 0;
		k->dport = 0;
		return bpf_map_lookup_elem(&policy, k);
	}
	return NULL;
}

/* policy_verdict returns REASON_POLICY_ALLOW or a drop reason for a new
 * flow with the peer of identity peer_id at address peer. */
static __always_inline __u8 policy_verdict(__u16 ep_id, __u8 dir,
					   __u32 peer_id, const struct pkt *p,
					   const union addr *peer)
{
	struct policy_key k = {};
	struct policy_value *exact, *any;
	struct policy_gen_value *gen;
	__u16 dport = bpf_ntohs(p->dport);
	__u32 mask;

	gen = bpf_map_lookup_elem(&policy_gen, &ep_id);
	if (!gen)
		return REASON_DROP_POLICY;
	mask = gen->mask[dir & 1];

	k.ep_id = bpf_htons(ep_id);
	k.dir = dir;
	k.gen = gen->gen;
	k.identity = peer_id;
	k.proto = p->proto;
	exact = policy_match(&k, mask, dport);
	k.identity = IDENTITY_ANY;
	k.proto = p->proto;
	any = policy_match(&k, mask, dport);

	/* Deny wins. Within one identity the loader marks every entry covered
	 * by a less specific deny as deny, so the most specific match suffices. */
	if (exact && exact->deny) {
		__sync_fetch_and_add(&exact->packets, 1);
		return REASON_DROP_POLICY_DENY;
	}
	if (any && any->deny) {
		__sync_fetch_and_add(&any->packets, 1);
		return REASON_DROP_POLICY_DENY;
	}
	if (exact) {
		__sync_fetch_and_add(&exact->packets, 1);
		return REASON_POLICY_ALLOW;
	}
	if (any) {
		__sync_fetch_and_add(&any->packets, 1);
		return REASON_POLICY_ALLOW;
	}
	/* No entry of the peer's identity allows the flow: rules that select
	 * peers by address may (a pod inside an ipBlock). */
	if (mask & POLICY_MASK_BY_ADDR) {
		struct ipcache_key ck = {};
		__u32 *cid;

		ipcache_key_of(p, peer, &ck);
		cid = bpf_map_lookup_elem(&cidr_ids, &ck);
		if (cid) {
			k.identity = *cid | IDENTITY_BY_ADDR;
			k.proto = p->proto;
			exact = policy_match(&k, mask, dport);
			if (exact && !exact->deny) {
				__sync_fetch_and_add(&exact->packets, 1);
				return REASON_POLICY_ALLOW;
			}
		}
	}
	return REASON_DROP_POLICY;
}

static __always_inline __u64 ct_lifetime(const struct ct_value *v, __u8 proto)
{
	if (v->flags & CT_FLAG_CLOSING)
		return ct_timeout_closing_ns;
	if (proto == IPPROTO_TCP)
		return ct_timeout_tcp_ns;
	return ct_timeout_other_ns;
}

/* ct_refresh updates a live entry and returns 1, or returns 0 if it expired
 * (or is a closed TCP flow that a new SYN reopens). */
static __always_inline int ct_refresh(struct ct_value *v, const struct pkt *p,
				      __u64 now, __u32 len, int reply)
{
	if (now - v->last_seen > ct_lifetime(v, p->proto))
		return 0;
	if (p->proto == IPPROTO_TCP) {
		if ((v->flags & CT_FLAG_CLOSING) &&
		    (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
			return 0;
		if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
			v->flags |= CT_FLAG_CLOSING;
	}
	if (reply)
		v->flags |= CT_FLAG_SEEN_REPLY;
	v->last_seen = now;
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, len);
	return 1;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	struct pkt p = {};
	struct ct_key ck = {}, rk = {};
	struct ct_value *cv;
	struct ep_config *cfg;
	__u32 ifindex = skb->ifindex;
	__u16 *ep;
	__u16 ep_id;
	__u32 peer_id;
	const union addr *peer;
	__u64 now;
	__u8 reason;
	int enforced, traced;

	ep = bpf_map_lookup_elem(&endpoints, &ifindex);
	if (!ep)
		return TC_ACT_UNSPEC; /* not an endpoint we manage */
	ep_id = *ep;
	cfg = bpf_map_lookup_elem(&ep_config, &ep_id);
	if (!cfg)
		return TC_ACT_UNSPEC;
	enforced = dir == DIR_INGRESS ? cfg->enforce_ingress : cfg->enforce_egress;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		reason = parse4(skb, &p);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		reason = parse6(skb, &p);
	} else {
		count(dir, REASON_NOT_IP, skb->len);
		return TC_ACT_UNSPEC;
	}
	if (reason == REASON_ICMP6_LINK) {
		count(dir, reason, skb->len);
		return TC_ACT_UNSPEC;
	}
	if (reason) {
		count(dir, reason, skb->len);
		emit(skb, &p, ep_id, cfg->identity, IDENTITY_WORLD, dir,
		     VERDICT_DROPPED, reason, 0);
		return TC_ACT_SHOT;
	}

	now = bpf_ktime_get_ns();
	ck.saddr = p.saddr;
	ck.daddr = p.daddr;
	ck.sport = p.ct_sport;
	ck.dport = p.ct_dport;
	ck.ep_id = ep_id;
	ck.proto = p.proto;
	ck.dir = dir;
	ck.family = p.family;
	cv = bpf_map_lookup_elem(&ct, &ck);
	if (cv && ct_refresh(cv, &p, now, skb->len, 0)) {
		count(dir, REASON_CT_ESTABLISHED, skb->len);
		return TC_ACT_UNSPEC;
	}

	rk.saddr = p.daddr;
	rk.daddr = p.saddr;
	rk.sport = p.ct_dport;
	rk.dport = p.ct_sport;
	rk.ep_id = ep_id;
	rk.proto = p.proto;
	rk.dir = dir ^ 1;
	rk.family = p.family;
	cv = bpf_map_lookup_elem(&ct, &rk);
	if (cv) {
		/* The first reply of a reported flow is reported too (e.g. the
		 * SYN-ACK): the flow was answered. */
		int first_reply = (cv->flags & (CT_FLAG_TRACED | CT_FLAG_SEEN_REPLY)) == CT_FLAG_TRACED;

		if (ct_refresh(cv, &p, now, skb->len, 1)) {
			count(dir, REASON_CT_REPLY, skb->len);
			if (first_reply)
				emit(skb, &p, ep_id, cfg->identity, cv->peer_identity,
				     dir, VERDICT_ALLOWED, REASON_CT_REPLY,
				     EVENT_FLAG_REPLY);
			return TC_ACT_UNSPEC;
		}
	}

	/* New flow. */
	peer = dir == DIR_INGRESS ? &p.saddr : &p.daddr;
	peer_id = lookup_identity(&p, peer);
	if (enforced)
		reason = policy_verdict(ep_id, dir, peer_id, &p, peer);
	else
		reason = REASON_NOT_ENFORCED;

	if (reason >= REASON_DROP_POLICY) {
		count(dir, reason, skb->len);
		emit(skb, &p, ep_id, cfg->identity, peer_id, dir,
		     VERDICT_DROPPED, reason, 0);
		return TC_ACT_SHOT;
	}

	traced = trace_sample &&
		 (trace_sample == 1 || bpf_get_prandom_u32() % trace_sample == 0);
	{
		struct ct_value nv = {
			.last_seen = now,
			.packets = 1,
			.bytes = skb->len,
			.peer_identity = peer_id,
		};
		if (p.proto == IPPROTO_TCP &&
		    (p.tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
			nv.flags |= CT_FLAG_CLOSING;
		if (traced)
			nv.flags |= CT_FLAG_TRACED;
		bpf_map_update_elem(&ct, &ck, &nv, BPF_ANY);
	}
	count(dir, reason, skb->len);
	if (traced)
		emit(skb, &p, ep_id, cfg->identity, peer_id, dir,
		     VERDICT_ALLOWED, reason, 0);
	return TC_ACT_UNSPEC;
}

/* Host-side ingress = packets leaving the pod = pod egress. */
SEC("tcx/ingress")
int from_endpoint(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS);
}

/* Host-side egress = packets towards the pod = pod ingress. */
SEC("tcx/egress")
int to_endpoint(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS);
}

char __license[] SEC("license") = "Dual BSD/GPL";
