/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Part of tc.c (included by it alone): connection tracking. */
#pragma once

/* ct: connection tracking, IPv4 and IPv6. An entry is created by the first
 * allowed packet of a flow at one endpoint in one direction; its key is that
 * packet's tuple (IPv4 addresses in the first 4 bytes, the rest zero). */
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
