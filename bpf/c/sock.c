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

	rk.cookie = cookie;
	rk.addr = be->addr;
	rk.port = be->port;
	rv.addr = ctx->user_ip4;
	rv.port = ctx_port(ctx);
	bpf_map_update_elem(&lb4_revnat, &rk, &rv, BPF_ANY);

	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
}

static __always_inline void revnat(struct bpf_sock_addr *ctx)
{
	struct revnat_key rk = {};
	struct revnat_value *rv;

	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.addr = ctx->user_ip4;
	rk.port = ctx_port(ctx);
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

char __license[] SEC("license") = "Dual BSD/GPL";
