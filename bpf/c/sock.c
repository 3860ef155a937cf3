//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Socket-level load balancing: cgroup sock_addr programs rewrite a service
 * frontend to one of its backends at connect/sendmsg time and back at
 * recvmsg/getpeername time. */
#include "common.h"

/* lb4_services: slot 0 holds the number of backends of a frontend, slots
 * 1..count hold the backends. Backends are written before the count grows
 * and deleted after it shrinks, so a reader never sees an empty slot. */
struct lb4_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
	__u16 slot;
	__u16 pad2;
};

struct lb4_value {
	__be32 addr;
	__be16 port;
	__u16 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_key);
	__type(value, struct lb4_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_services SEC(".maps");

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

/* claim_slot records a connected socket's translation in its slot; false
 * if the slot belongs to another socket. */
static __always_inline int claim_slot(__u64 cookie, __be32 be_addr, __be16 be_port,
				      __be32 fe_addr, __be16 fe_port)
{
	struct revnat_slot *s = sk_slot(cookie);

	if (!s)
		return 0;
	if (s->cookie != cookie &&
	    (s->cookie != 0 || __sync_val_compare_and_swap(&s->cookie, 0, cookie) != 0))
		return 0;
	s->be_addr = be_addr;
	s->be_port = be_port;
	s->fe_addr = fe_addr;
	s->fe_port = fe_port;
	return 1;
}

static __always_inline __be16 ctx_port(const struct bpf_sock_addr *ctx)
{
	volatile __u32 port = ctx->user_port;

	return (__be16)port;
}

/* xlate rewrites ctx's destination if it is a frontend. by_cookie picks the
 * backend by a hash of the socket cookie (sticky per socket), otherwise at
 * random. */
static __always_inline void xlate(struct bpf_sock_addr *ctx, int by_cookie)
{
	struct lb4_key k = {};
	struct lb4_value *svc, *be;
	struct revnat_key rk = {};
	struct revnat_value rv = {};
	__u64 cookie;
	__u32 pick;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return;
	k.addr = ctx->user_ip4;
	k.port = ctx_port(ctx);
	k.proto = ctx->protocol;
	svc = bpf_map_lookup_elem(&lb4_services, &k);
	if (!svc || svc->count == 0)
		return;

	cookie = bpf_get_socket_cookie(ctx);
	if (by_cookie)
		pick = (__u32)(cookie ^ (cookie >> 32)) * 2654435761u;
	else
		pick = bpf_get_prandom_u32();
	k.slot = pick % svc->count + 1;
	be = bpf_map_lookup_elem(&lb4_services, &k);
	if (!be) {
		/* racing with a shrink: fall back to the first backend */
		k.slot = 1;
		be = bpf_map_lookup_elem(&lb4_services, &k);
		if (!be)
			return;
	}

	if (by_cookie || !claim_slot(cookie, be->addr, be->port, ctx->user_ip4, ctx_port(ctx))) {
		rk.cookie = cookie;
		rk.addr = be->addr;
		rk.port = be->port;
		rv.addr = ctx->user_ip4;
		rv.port = ctx_port(ctx);
		bpf_map_update_elem(&lb4_revnat, &rk, &rv, BPF_ANY);
	}

	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
}

static __always_inline void revnat(struct bpf_sock_addr *ctx)
{
	struct revnat_key rk = {};
	struct revnat_value *rv;
	struct revnat_slot *s;

	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.addr = ctx->user_ip4;
	rk.port = ctx_port(ctx);
	s = sk_slot(rk.cookie);
	if (s && s->cookie == rk.cookie && s->be_addr == rk.addr && s->be_port == rk.port) {
		ctx->user_ip4 = s->fe_addr;
		ctx->user_port = (__u32)s->fe_port;
		return;
	}
	rv = bpf_map_lookup_elem(&lb4_revnat, &rk);
	if (!rv)
		return;
	ctx->user_ip4 = rv->addr;
	ctx->user_port = (__u32)rv->port;
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	xlate(ctx, 0);
	return 1;
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	xlate(ctx, 1);
	return 1;
}

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	revnat(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx)
{
	revnat(ctx);
	return 1;
}

/* sock_release frees the slot of a connected socket as it closes, or its
 * lb4_revnat entry when it had none. (Unconnected UDP sockets' entries age
 * out of the LRU.) */
SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *ctx)
{
	struct revnat_key rk = {};
	struct revnat_slot *s;

	if (ctx->family != 2 /* AF_INET */ ||
	    (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP))
		return 1;
	/* The slot first, whatever the socket's state now: a UDP socket may
	 * have been disconnected (AF_UNSPEC) since it claimed it. */
	rk.cookie = bpf_get_socket_cookie(ctx);
	s = sk_slot(rk.cookie);
	if (s && s->cookie == rk.cookie) {
		__sync_val_compare_and_swap(&s->cookie, rk.cookie, 0);
		return 1;
	}
	if (!ctx->dst_ip4)
		return 1;
	rk.addr = ctx->dst_ip4;
	rk.port = ctx->dst_port;
	bpf_map_delete_elem(&lb4_revnat, &rk);
	return 1;
}

char __license[] SEC("license") = "Dual BSD/GPL";
