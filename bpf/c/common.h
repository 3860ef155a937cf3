/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared definitions of the clustermesh datapath. The layouts of the structs
 * here are mirrored by the Go side (the bpf package); change both together. */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET4 4
#define AF_INET6 6

/* Reserved identities (as in Cilium). */
#define IDENTITY_ANY 0
#define IDENTITY_WORLD 2

/* Policy direction, seen from the endpoint (pod). */
#define DIR_INGRESS 0 /* towards the pod: host-side veth egress hook */
#define DIR_EGRESS 1  /* leaving the pod: host-side veth ingress hook */
