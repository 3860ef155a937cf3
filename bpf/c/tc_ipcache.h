/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Part of tc.c (included by it alone): the ipcache, address ->
 * identity, and the CIDR identities of the policies. */
#pragma once

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
