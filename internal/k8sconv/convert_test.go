package k8sconv

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

func TestNodeToSchema(t *testing.T) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{WireguardPubKeyAnnotation: "not-a-key"}},
		Spec:       corev1.NodeSpec{PodCIDRs: []string{"10.1.1.0/24", "fd00:1::/64", "10.9.0.0/16", "10.2.2.1/24", "bogus"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}, {Type: corev1.NodeExternalIP, Address: "2001:db8::1"},
			{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "nope"},
		}},
	}
	n, problems := NodeToSchema("c1", 3, node)
	got := []string{n.IPv4AllocCIDR.String(), n.IPv6AllocCIDR.String()}
	for _, c := range n.IPv4SecondaryAllocCIDRs {
		got = append(got, c.String())
	}
	if diff := cmp.Diff([]string{"10.1.1.0/24", "fd00:1::/64", "10.9.0.0/16"}, got); diff != "" {
		t.Errorf("pod CIDRs (-want +got):\n%s", diff)
	}
	if len(n.IPAddresses) != 2 || n.InternalIP(false) != netip.MustParseAddr("192.168.1.10") {
		t.Errorf("addresses %+v", n.IPAddresses)
	}
	if n.WireguardPubKey != "" || n.ClusterID != 3 || n.Cluster != "c1" {
		t.Errorf("node %+v", n)
	}
	joined := strings.Join(problems, "\n")
	for _, want := range []string{`"10.2.2.1/24"`, `"bogus"`, `"nope"`, "WireGuard public key"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems do not mention %s:\n%s", want, joined)
		}
	}
	b, _ := n.Marshal()
	if _, err := schema.DecodeNode(schema.DefaultPaths().Node("c1", "n1"), b); err != nil {
		t.Fatalf("exported node fails the schema decoder: %v", err)
	}
}

func TestNamedPorts(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9090}}}},
		Containers: []corev1.Container{
			{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 81}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
			{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "bad", ContainerPort: 70000}}},
		},
	}}
	want := []schema.NamedPort{{Name: "dns", Port: 53, Protocol: "UDP"}, {Name: "http", Port: 8080, Protocol: "TCP"}, {Name: "metrics", Port: 9090, Protocol: "TCP"}}
	if diff := cmp.Diff(want, NamedPorts(pod)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}
