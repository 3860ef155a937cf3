package k8sconv

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// A dual-stack node converts with both families' pod CIDRs and addresses;
// an IPv4-mapped pod CIDR counts as the IPv4 prefix it maps (the schema
// cannot hold a mapped prefix: written as such, the whole node failed to
// encode, and the node was never exported), and addresses are unmapped.
func TestNodeToSchemaFamilies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cidrs    []string
		want     []string
		problems []string
	}{
		{name: "dual-stack", cidrs: []string{"10.1.1.0/24", "fd00:1:0:1::/64"}, want: []string{"10.1.1.0/24", "fd00:1:0:1::/64"}},
		{name: "IPv6 first", cidrs: []string{"fd00:1:0:1::/64", "10.1.1.0/24"}, want: []string{"10.1.1.0/24", "fd00:1:0:1::/64"}},
		{name: "IPv6 only", cidrs: []string{"fd00:1:0:1::/64"}, want: []string{"fd00:1:0:1::/64"}},
		{name: "IPv4-mapped", cidrs: []string{"::ffff:10.1.2.0/120", "fd00:1:0:2::/64"}, want: []string{"10.1.2.0/24", "fd00:1:0:2::/64"}},
		{name: "IPv4-mapped with host bits", cidrs: []string{"::ffff:10.1.2.1/120", "10.1.3.0/24"}, want: []string{"10.1.3.0/24"},
			problems: []string{`node n1: pod CIDR "::ffff:10.1.2.1/120" is not a valid prefix; fix spec.podCIDRs`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDRs: tc.cidrs},
				Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}, {Type: corev1.NodeInternalIP, Address: "2001:db8:1::10"},
					{Type: corev1.NodeExternalIP, Address: "::ffff:203.0.113.1"},
				}}}
			n, problems := NodeToSchema("c1", 1, node)
			var got []string
			for _, p := range n.PodCIDRs() {
				got = append(got, p.String())
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("pod CIDRs (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.problems, problems); d != "" {
				t.Errorf("problems (-want +got):\n%s", d)
			}
			var addrs []string
			for _, a := range n.IPAddresses {
				addrs = append(addrs, a.Type+" "+a.IP.String())
			}
			if d := cmp.Diff([]string{"InternalIP 192.168.1.10", "InternalIP 2001:db8:1::10", "ExternalIP 203.0.113.1"}, addrs); d != "" {
				t.Errorf("addresses (-want +got):\n%s", d)
			}
			b, err := n.Marshal()
			if err != nil {
				t.Fatalf("the node does not encode: %v", err)
			}
			if _, err := schema.DecodeNode(schema.DefaultPaths().Node("c1", "n1"), b); err != nil {
				t.Fatalf("the exported node fails the schema decoder: %v", err)
			}
			if strings.Contains(string(b), "::ffff:") {
				t.Errorf("an IPv4-mapped address reached the record: %s", b)
			}
		})
	}
}
