/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The reverse translation of socket load balancing: what sock.c records
 * at connect()/sendmsg() time for a socket (its cookie, the backend it was
 * sent to, the frontend it asked for) and reads back at recvmsg() and
 * getpeername() time. tc.c reads it too, to report the Service frontend of
 * a flow whose packet still carries its socket (the client's own endpoint,
 * egress). Both objects declare these maps identically, pinned by name:
 * the first one loaded creates them, the other opens the pins. */
#pragma once

#include "common.h"


/* lb4_revnat: (socket cookie, backend) -> frontend. */
struct revnat_key {
	__u64 cookie;
	__be32 addr;
	__be16 port;
	__u16 pad;
};

struct revnat_value {
	__be32 addr;
	__be16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct revnat_key);
	__type(value, struct revnat_value);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_revnat SEC(".maps");

/* lb4_revnat_sk: the reverse translation of connected sockets, in the slot
 * of the socket cookie's low bits. Cookies grow by one per socket (per CPU
 * batch), so sockets created one after another use neighbouring slots (hot
 * in the cache; a hash of the cookie, scattering them, measured slower) and
 * a live socket shares its slot only with one created 2^18 sockets later.
 * connect() claims a free slot with
 * a compare-and-swap and fills it with plain stores (no helper call, no
 * lock: a hash map update costs most of the program), sock_release frees
 * it. A socket whose slot is taken by another live socket falls back to
 * lb4_revnat, as do unconnected UDP sockets (sendmsg). */
struct revnat_slot {
	__u64 cookie; /* 0: free */
	__be32 be_addr;
	__be16 be_port;
	__u16 pad;
	__be32 fe_addr;
	__be16 fe_port;
	__u16 pad2;
};

#define REVNAT_SLOTS_BITS 18

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct revnat_slot);
	__uint(max_entries, 1 << REVNAT_SLOTS_BITS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_revnat_sk SEC(".maps");

static __always_inline struct revnat_slot *sk_slot(__u64 cookie)
{
	__u32 idx = (__u32)cookie & ((1u << REVNAT_SLOTS_BITS) - 1);

	return bpf_map_lookup_elem(&lb4_revnat_sk, &idx);
}

/* revnat4 returns the frontend of the socket cookie's translation to the
 * backend (addr, port), if any: from its slot, else from lb4_revnat. */
static __always_inline int revnat4(__u64 cookie, __be32 addr, __be16 port,
				   __be32 *fe_addr, __be16 *fe_port)
{
	struct revnat_key rk = {};
	struct revnat_value *rv;
	struct revnat_slot *s;

	s = sk_slot(cookie);
	if (s && s->cookie == cookie && s->be_addr == addr && s->be_port == port) {
		*fe_addr = s->fe_addr;
		*fe_port = s->fe_port;
		return 1;
	}
	rk.cookie = cookie;
	rk.addr = addr;
	rk.port = port;
	rv = bpf_map_lookup_elem(&lb4_revnat, &rk);
	if (!rv)
		return 0;
	*fe_addr = rv->addr;
	*fe_port = rv->port;
	return 1;
}

/* IPv6: lb6_revnat and lb6_revnat_sk are lb4_revnat and lb4_revnat_sk with
 * 16-byte addresses. */
union addr6 {
	__u32 w[4];
	__u8 b[16];
};

struct revnat6_key {
	__u64 cookie;
	union addr6 addr;
	__be16 port;
	__u16 pad;
	__u32 pad2;
};

struct revnat6_value {
	union addr6 addr;
	__be16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct revnat6_key);
	__type(value, struct revnat6_value);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb6_revnat SEC(".maps");

/* lb6_revnat_sk: lb4_revnat_sk for IPv6 sockets (2^17 slots of 48 bytes). */
struct revnat6_slot {
	__u64 cookie; /* 0: free */
	union addr6 be_addr;
	__be16 be_port;
	__u16 pad;
	union addr6 fe_addr;
	__be16 fe_port;
	__u16 pad2;
};

#define REVNAT6_SLOTS_BITS 17

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct revnat6_slot);
	__uint(max_entries, 1 << REVNAT6_SLOTS_BITS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb6_revnat_sk SEC(".maps");

static __always_inline struct revnat6_slot *sk6_slot(__u64 cookie)
{
	__u32 idx = (__u32)cookie & ((1u << REVNAT6_SLOTS_BITS) - 1);

	return bpf_map_lookup_elem(&lb6_revnat_sk, &idx);
}

/* revnat6_lookup returns the frontend of the socket cookie's translation to
 * the IPv6 backend (addr, port), if any: from its slot, else from
 * lb6_revnat. */
static __always_inline int revnat6_lookup(__u64 cookie, const union addr6 *addr, __be16 port,
					  union addr6 *fe_addr, __be16 *fe_port)
{
	struct revnat6_key rk = {};
	struct revnat6_value *rv;
	struct revnat6_slot *s;

	s = sk6_slot(cookie);
	if (s && s->cookie == cookie && s->be_port == port &&
	    s->be_addr.w[0] == addr->w[0] && s->be_addr.w[1] == addr->w[1] &&
	    s->be_addr.w[2] == addr->w[2] && s->be_addr.w[3] == addr->w[3]) {
		*fe_addr = s->fe_addr;
		*fe_port = s->fe_port;
		return 1;
	}
	rk.cookie = cookie;
	rk.addr = *addr;
	rk.port = port;
	rv = bpf_map_lookup_elem(&lb6_revnat, &rk);
	if (!rv)
		return 0;
	*fe_addr = rv->addr;
	*fe_port = rv->port;
	return 1;
}
