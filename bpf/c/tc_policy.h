/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Part of tc.c (included by it alone): the endpoints, their policy
 * maps and the verdict of a new flow. */
#pragma once

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
