package server_test

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/kvstore"
)

// A dual-stack cluster exports both families, in the exact form a peer
// (ours or Cilium's) reads: a node's IPv4 and IPv6 pod CIDRs
// (IPv4AllocCIDR, IPv6AllocCIDR) and addresses; one ip entry per pod IP of
// status.podIPs (a dual-stack pod's two, an IPv6-only pod's one, each
// with the pod's status.hostIP as host, as Cilium writes it); a
// dual-stack Service's two cluster IPs and the backends of its IPv4 and
// IPv6 EndpointSlices. A pod losing its IPv6 address loses that entry, and
// a deleted pod both.
func TestExportsDualStack(t *testing.T) {
	b := newStoppedBedOn(t, k8stest.Start(t, k8stest.DualStack()), nil)
	b.start(t)
	b.admin = b.client(t, kvstore.AdminUser)
	cs := b.kube.Client

	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kubernetes.io/hostname": "n1"}},
		Spec:       corev1.NodeSpec{PodCIDR: "10.1.1.0/24", PodCIDRs: []string{"10.1.1.0/24", "fd00:1:0:1::/64"}},
	}
	node, err := cs.CoreV1().Nodes().Create(t.Context(), node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}, {Type: corev1.NodeInternalIP, Address: "2001:db8:1::10"},
		{Type: corev1.NodeHostName, Address: "n1"},
	}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(t.Context(), node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name, hostIP string, ips ...string) {
		t.Helper()
		p := b.kube.CreatePod(t, "default", name, map[string]string{"app": "x-wing"}, podSpec(), "", "")
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ips[0], HostIP: hostIP, HostIPs: []corev1.HostIP{{IP: hostIP}}}
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("x-wing", "192.168.1.10", "10.1.1.5", "fd00:1:0:1::5")
	pod("y-wing", "2001:db8:1::10", "fd00:1:0:1::6")

	dual := corev1.IPFamilyPolicyRequireDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "rebel-base", Labels: map[string]string{"app": "rebel-base"},
			Annotations: map[string]string{"service.cilium.io/global": "true"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "rebel-base"}, Ports: httpPort, IPFamilyPolicy: &dual,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}},
	}
	svc, err = cs.CoreV1().Services("default").Create(t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.ClusterIPs) != 2 {
		t.Fatalf("the kube-apiserver gave the dual-stack Service cluster IPs %v", svc.Spec.ClusterIPs)
	}
	yes, no := true, false
	name, proto, port := "http", corev1.ProtocolTCP, int32(8080)
	for _, s := range []struct {
		suffix string
		typ    discoveryv1.AddressType
		eps    []discoveryv1.Endpoint
	}{
		{"v4", discoveryv1.AddressTypeIPv4, []discoveryv1.Endpoint{{Addresses: []string{"10.1.1.5"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}}},
		{"v6", discoveryv1.AddressTypeIPv6, []discoveryv1.Endpoint{
			{Addresses: []string{"fd00:1:0:1::5"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
			{Addresses: []string{"fd00:1:0:1::7"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}},
		}},
	} {
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "rebel-base-" + s.suffix,
				Labels: map[string]string{discoveryv1.LabelServiceName: "rebel-base"}},
			AddressType: s.typ, Endpoints: s.eps,
			Ports: []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &port}},
		}
		if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(t.Context(), es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	b.waitSynced(t)

	p := b.paths
	wantNode := `{"Name":"n1","Cluster":"cluster1","IPAddresses":[{"Type":"InternalIP","IP":"192.168.1.10"},{"Type":"InternalIP","IP":"2001:db8:1::10"}],` +
		`"IPv4AllocCIDR":{"IP":"10.1.1.0","Mask":"////AA=="},"IPv4SecondaryAllocCIDRs":null,` +
		`"IPv6AllocCIDR":{"IP":"fd00:1:0:1::","Mask":"//////////8AAAAAAAAAAA=="},"IPv6SecondaryAllocCIDRs":null,` +
		`"IPv4HealthIP":"","IPv6HealthIP":"","IPv4IngressIP":"","IPv6IngressIP":"","ClusterID":1,"Source":"custom-resource","EncryptionKey":0,` +
		`"Labels":{"kubernetes.io/hostname":"n1"},"Annotations":null,"WireguardPubKey":"","BootID":""}`
	b.waitValue(t, p.Node("cluster1", "n1"), wantNode)
	entry := func(ip, host, pod string) string {
		return `{"IP":"` + ip + `","Mask":null,"HostIP":"` + host + `","ID":65537,"Key":0,"Metadata":"",` +
			`"K8sNamespace":"default","K8sPodName":"` + pod + `","K8sServiceAccount":"pilot","NamedPorts":[{"Name":"http","Port":8080,"Protocol":"TCP"}]}`
	}
	wantIPs := map[string]string{
		p.IPDefaultPrefix() + "10.1.1.5":      entry("10.1.1.5", "192.168.1.10", "x-wing"),
		p.IPDefaultPrefix() + "fd00:1:0:1::5": entry("fd00:1:0:1::5", "192.168.1.10", "x-wing"),
		p.IPDefaultPrefix() + "fd00:1:0:1::6": entry("fd00:1:0:1::6", "2001:db8:1::10", "y-wing"),
	}
	for k, v := range wantIPs {
		b.waitValue(t, k, v)
	}
	wantSvc := `{"cluster":"cluster1","namespace":"default","name":"rebel-base",` +
		`"frontends":{"` + svc.Spec.ClusterIPs[0] + `":{"http":{"Protocol":"TCP","Port":80}},"` + svc.Spec.ClusterIPs[1] + `":{"http":{"Protocol":"TCP","Port":80}}},` +
		`"backends":{"10.1.1.5":{"http":{"Protocol":"TCP","Port":8080}},"fd00:1:0:1::5":{"http":{"Protocol":"TCP","Port":8080}}},` +
		`"labels":{"app":"rebel-base"},"selector":{"app":"rebel-base"},"includeExternal":true,"shared":true,"clusterID":1}`
	b.waitValue(t, p.Service("cluster1", "default", "rebel-base"), wantSvc)

	// What was exported passes the decoders a reader runs.
	if _, err := p.DecodeNode(p.Node("cluster1", "n1"), []byte(wantNode)); err != nil {
		t.Errorf("exported node: %v", err)
	}
	for k, v := range wantIPs {
		if _, err := p.DecodeIPEntry(k, []byte(v)); err != nil {
			t.Errorf("exported ip entry: %v", err)
		}
	}
	if dec, err := p.DecodeClusterService(p.Service("cluster1", "default", "rebel-base"), []byte(wantSvc)); err != nil {
		t.Errorf("exported service: %v", err)
	} else if fe := netip.MustParseAddr(svc.Spec.ClusterIPs[1]); !fe.Is6() || dec.Frontends[fe.String()] == nil {
		t.Errorf("the IPv6 cluster IP %v is not a frontend: %v", fe, dec.Frontends)
	}

	// x-wing loses its IPv6 address: only that entry goes.
	x, err := cs.CoreV1().Pods("default").Get(t.Context(), "x-wing", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	x.Status.PodIPs = x.Status.PodIPs[:1]
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(t.Context(), x, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "x-wing's IPv6 entry withdrawn", func() bool { return b.get(t, p.IPDefaultPrefix()+"fd00:1:0:1::5") == "" })
	if got := b.get(t, p.IPDefaultPrefix()+"10.1.1.5"); got != wantIPs[p.IPDefaultPrefix()+"10.1.1.5"] {
		t.Errorf("x-wing's IPv4 entry after its IPv6 one went: %s", got)
	}
	if err := cs.CoreV1().Pods("default").Delete(t.Context(), "y-wing", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "y-wing's IPv6 entry withdrawn", func() bool { return b.get(t, p.IPDefaultPrefix()+"fd00:1:0:1::6") == "" })
}
