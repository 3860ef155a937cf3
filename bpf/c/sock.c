//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Socket-level load balancing: cgroup sock_addr programs rewrite a service
 * frontend to one of its backends at connect/sendmsg time and back at
 * recvmsg/getpeername time. */
#include "common.h"
#include "lb.h"

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

/* pick4 picks a backend of the IPv4 frontend (addr, port, proto), by a hash
 * of the socket cookie (by_cookie: sticky per socket) or at random; NULL if
 * it is not a frontend (or has no backends). */
static __always_inline struct lb4_value *pick4(__be32 addr, __be16 port,
					       __u8 proto, __u64 cookie,
					       int by_cookie)
{
	struct lb4_key k = {};
	struct lb4_value *svc, *be;
	__u32 pick;

	k.addr = addr;
	k.port = port;
	k.proto = proto;
	svc = bpf_map_lookup_elem(&lb4_services, &k);
	if (!svc || svc->count == 0)
		return NULL;
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
	}
	return be;
}

/* remember4 records the reverse translation backend -> frontend of a
 * socket in lb4_revnat. */
static __always_inline void remember4(__u64 cookie, const struct lb4_value *be,
				      __be32 fe_addr, __be16 fe_port)
{
	struct revnat_key rk = {};
	struct revnat_value rv = {};

	rk.cookie = cookie;
	rk.addr = be->addr;
	rk.port = be->port;
	rv.addr = fe_addr;
	rv.port = fe_port;
	bpf_map_update_elem(&lb4_revnat, &rk, &rv, BPF_ANY);
}

/* xlate rewrites ctx's destination if it is a frontend. by_cookie picks the
 * backend by a hash of the socket cookie (sticky per socket), otherwise at
 * random. */
static __always_inline void xlate(struct bpf_sock_addr *ctx, int by_cookie)
{
	struct lb4_value *be;
	__u64 cookie;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return;
	cookie = bpf_get_socket_cookie(ctx);
	be = pick4(ctx->user_ip4, ctx_port(ctx), ctx->protocol, cookie, by_cookie);
	if (!be)
		return;
	if (by_cookie || !claim_slot(cookie, be->addr, be->port, ctx->user_ip4, ctx_port(ctx)))
		remember4(cookie, be, ctx->user_ip4, ctx_port(ctx));
	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
}

static __always_inline void revnat(struct bpf_sock_addr *ctx)
{
	__be32 addr;
	__be16 port;

	if (revnat4(bpf_get_socket_cookie(ctx), ctx->user_ip4, ctx_port(ctx), &addr, &port)) {
		ctx->user_ip4 = addr;
		ctx->user_port = (__u32)port;
	}
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

/* IPv6: lb6_services, lb6_revnat and lb6_revnat_sk are lb4_services,
 * lb4_revnat and lb4_revnat_sk with 16-byte addresses. An IPv6 socket's
 * IPv4-mapped destination (::ffff:a.b.c.d) is an IPv4 frontend: it is
 * translated through lb4_services (and lb4_revnat_sk or lb4_revnat) to the
 * mapped backend. */

struct lb6_key {
	union addr6 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
	__u16 slot;
	__u16 pad2;
};

struct lb6_value {
	union addr6 addr;
	__be16 port;
	__u16 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb6_key);
	__type(value, struct lb6_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb6_services SEC(".maps");


/* claim_slot6 is claim_slot for an IPv6 socket. */
static __always_inline int claim_slot6(__u64 cookie, const union addr6 *be_addr, __be16 be_port,
				       const union addr6 *fe_addr, __be16 fe_port)
{
	struct revnat6_slot *s = sk6_slot(cookie);

	if (!s)
		return 0;
	if (s->cookie != cookie &&
	    (s->cookie != 0 || __sync_val_compare_and_swap(&s->cookie, 0, cookie) != 0))
		return 0;
	s->be_addr = *be_addr;
	s->be_port = be_port;
	s->fe_addr = *fe_addr;
	s->fe_port = fe_port;
	return 1;
}

static __always_inline void load_ip6(const struct bpf_sock_addr *ctx, union addr6 *a)
{
	a->w[0] = ctx->user_ip6[0];
	a->w[1] = ctx->user_ip6[1];
	a->w[2] = ctx->user_ip6[2];
	a->w[3] = ctx->user_ip6[3];
}

static __always_inline void store_ip6(struct bpf_sock_addr *ctx, const union addr6 *a)
{
	ctx->user_ip6[0] = a->w[0];
	ctx->user_ip6[1] = a->w[1];
	ctx->user_ip6[2] = a->w[2];
	ctx->user_ip6[3] = a->w[3];
}

static __always_inline int v4mapped(const union addr6 *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0xffff);
}

static __always_inline void xlate6(struct bpf_sock_addr *ctx, int by_cookie)
{
	struct lb6_key k = {};
	struct lb6_value *svc, *be;
	struct revnat6_key rk = {};
	struct revnat6_value rv = {};
	__u64 cookie;
	__u32 pick;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return;
	load_ip6(ctx, &k.addr);
	cookie = bpf_get_socket_cookie(ctx);
	if (v4mapped(&k.addr)) {
		struct lb4_value *be4 = pick4(k.addr.w[3], ctx_port(ctx), ctx->protocol, cookie, by_cookie);

		if (!be4)
			return;
		if (by_cookie || !claim_slot(cookie, be4->addr, be4->port, k.addr.w[3], ctx_port(ctx)))
			remember4(cookie, be4, k.addr.w[3], ctx_port(ctx));
		ctx->user_ip6[3] = be4->addr;
		ctx->user_port = (__u32)be4->port;
		return;
	}
	k.port = ctx_port(ctx);
	k.proto = ctx->protocol;
	svc = bpf_map_lookup_elem(&lb6_services, &k);
	if (!svc || svc->count == 0)
		return;
	if (by_cookie)
		pick = (__u32)(cookie ^ (cookie >> 32)) * 2654435761u;
	else
		pick = bpf_get_prandom_u32();
	k.slot = pick % svc->count + 1;
	be = bpf_map_lookup_elem(&lb6_services, &k);
	if (!be) {
		k.slot = 1;
		be = bpf_map_lookup_elem(&lb6_services, &k);
		if (!be)
			return;
	}
	if (by_cookie || !claim_slot6(cookie, &be->addr, be->port, &k.addr, k.port)) {
		rk.cookie = cookie;
		rk.addr = be->addr;
		rk.port = be->port;
		rv.addr = k.addr;
		rv.port = k.port;
		bpf_map_update_elem(&lb6_revnat, &rk, &rv, BPF_ANY);
	}
	store_ip6(ctx, &be->addr);
	ctx->user_port = (__u32)be->port;
}

static __always_inline void revnat6(struct bpf_sock_addr *ctx)
{
	union addr6 addr, fe;
	__be16 port, fe_port;
	__u64 cookie = bpf_get_socket_cookie(ctx);

	load_ip6(ctx, &addr);
	port = ctx_port(ctx);
	if (v4mapped(&addr)) {
		__be32 fe4;

		if (revnat4(cookie, addr.w[3], port, &fe4, &fe_port)) {
			ctx->user_ip6[3] = fe4;
			ctx->user_port = (__u32)fe_port;
		}
		return;
	}
	if (revnat6_lookup(cookie, &addr, port, &fe, &fe_port)) {
		store_ip6(ctx, &fe);
		ctx->user_port = (__u32)fe_port;
	}
}

SEC("cgroup/connect6")
int sock_connect6(struct bpf_sock_addr *ctx)
{
	xlate6(ctx, 0);
	return 1;
}

SEC("cgroup/sendmsg6")
int sock_sendmsg6(struct bpf_sock_addr *ctx)
{
	xlate6(ctx, 1);
	return 1;
}

SEC("cgroup/recvmsg6")
int sock_recvmsg6(struct bpf_sock_addr *ctx)
{
	revnat6(ctx);
	return 1;
}

SEC("cgroup/getpeername6")
int sock_getpeername6(struct bpf_sock_addr *ctx)
{
	revnat6(ctx);
	return 1;
}

/* sock_release frees the slot of a connected socket as it closes, or its
 * revnat entry when it had none. (Unconnected UDP sockets' entries age out
 * of the LRU.) */
SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *ctx)
{
	struct revnat_key rk = {};
	struct revnat6_key rk6 = {};
	struct revnat_slot *s;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	rk.cookie = bpf_get_socket_cookie(ctx);
	if (ctx->family == 10 /* AF_INET6 */) {
		rk6.cookie = rk.cookie;
		rk6.addr.w[0] = ctx->dst_ip6[0];
		rk6.addr.w[1] = ctx->dst_ip6[1];
		rk6.addr.w[2] = ctx->dst_ip6[2];
		rk6.addr.w[3] = ctx->dst_ip6[3];
		rk6.port = ctx->dst_port;
		if (v4mapped(&rk6.addr)) {
			s = sk_slot(rk.cookie);
			if (s && s->cookie == rk.cookie) {
				__sync_val_compare_and_swap(&s->cookie, rk.cookie, 0);
				return 1;
			}
			rk.addr = rk6.addr.w[3];
			rk.port = rk6.port;
			bpf_map_delete_elem(&lb4_revnat, &rk);
		} else {
			struct revnat6_slot *s6 = sk6_slot(rk.cookie);

			if (s6 && s6->cookie == rk.cookie) {
				__sync_val_compare_and_swap(&s6->cookie, rk.cookie, 0);
				return 1;
			}
			bpf_map_delete_elem(&lb6_revnat, &rk6);
		}
		return 1;
	}
	if (ctx->family != 2 /* AF_INET */)
		return 1;
	/* The slot first, whatever the socket's state now: a UDP socket may
	 * have been disconnected (AF_UNSPEC) since it claimed it. */
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
