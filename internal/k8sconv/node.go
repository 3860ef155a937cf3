// Package k8sconv converts Kubernetes objects into the records of the etcd
// schema, for the clustermesh-apiserver (which exports them) and the agent
// (which reads its own cluster from Kubernetes in the same form).
package k8sconv

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// WireguardPubKeyAnnotation is the Node annotation on which the agent
// publishes its WireGuard public key (Cilium's name).
const WireguardPubKeyAnnotation = "network.cilium.io/wg-pub-key"

// NodeToSchema converts a Kubernetes node into the etcd node record, and
// says what it had to leave out.
func NodeToSchema(cluster string, clusterID uint32, node *corev1.Node) (schema.Node, []string) {
	var problems []string
	n := schema.Node{
		Name:            node.Name,
		Cluster:         cluster,
		ClusterID:       clusterID,
		Source:          "custom-resource",
		Labels:          node.Labels,
		WireguardPubKey: node.Annotations[WireguardPubKeyAnnotation],
		BootID:          node.Status.NodeInfo.BootID,
	}
	for _, a := range node.Status.Addresses {
		var typ string
		switch a.Type {
		case corev1.NodeInternalIP:
			typ = schema.AddressInternalIP
		case corev1.NodeExternalIP:
			typ = schema.AddressExternalIP
		default:
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			problems = append(problems, fmt.Sprintf("node %s: address %q is not an IP; fix status.addresses", node.Name, a.Address))
			continue
		}
		n.IPAddresses = append(n.IPAddresses, schema.NodeAddress{Type: typ, IP: net.IP(ip.Unmap().AsSlice())})
	}
	cidrs := node.Spec.PodCIDRs
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs = []string{node.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil || p.Masked() != p {
			problems = append(problems, fmt.Sprintf("node %s: pod CIDR %q is not a valid prefix; fix spec.podCIDRs", node.Name, c))
			continue
		}
		if p.Addr().Is4In6() {
			// The schema has no IPv4-mapped prefix (Cilium's cidr.CIDR
			// reads it as IPv4): written as such, the node would not
			// encode at all. Masked, it is at least a /96.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		cidr := schema.NewCIDR(p)
		switch {
		case p.Addr().Is4() && n.IPv4AllocCIDR == nil:
			n.IPv4AllocCIDR = cidr
		case p.Addr().Is4():
			n.IPv4SecondaryAllocCIDRs = append(n.IPv4SecondaryAllocCIDRs, cidr)
		case n.IPv6AllocCIDR == nil:
			n.IPv6AllocCIDR = cidr
		default:
			n.IPv6SecondaryAllocCIDRs = append(n.IPv6SecondaryAllocCIDRs, cidr)
		}
	}
	if k := n.WireguardPubKey; k != "" {
		if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 {
			problems = append(problems, fmt.Sprintf("node %s: annotation %s is not a WireGuard public key (base64 of 32 bytes)", node.Name, WireguardPubKeyAnnotation))
			n.WireguardPubKey = ""
		}
	}
	return n, problems
}
