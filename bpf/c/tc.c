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

#include "tc_parse.h"
#include "tc_ipcache.h"
#include "tc_policy.h"
#include "tc_ct.h"
#include "tc_events.h"

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
