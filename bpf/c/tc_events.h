/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Part of tc.c (included by it alone): per-reason counters and the
 * verdict events of the ring buffer. */
#pragma once

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

static __always_inline void count(__u8 dir, __u8 reason, __u32 len)
{
	__u32 idx = (__u32)dir * REASON_MAX + reason;
	struct metrics_value *m = bpf_map_lookup_elem(&metrics, &idx);

	if (m) {
		m->packets++;
		m->bytes += len;
	}
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
