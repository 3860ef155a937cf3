package local_test

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/agent/desired"
	"github.com/clustermesh/clustermesh/agent/local"
	"github.com/clustermesh/clustermesh/agent/state"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
)

// The local cluster in both families: a dual-stack node's pod CIDRs and
// addresses, an ipcache row per pod IP of status.podIPs (a dual-stack
// pod's two, an IPv6-only pod's one), this node's endpoint with both of
// its addresses, and a dual-stack Service with the backends of its IPv4
// and IPv6 EndpointSlices, whose IPv4 cluster IP gets the IPv4 backend and
// IPv6 one the IPv6 backend. A pod losing its IPv6 address loses that row.
func TestLocalClusterDualStack(t *testing.T) {
	kube := k8stest.Start(t, k8stest.DualStack())
	rc, err := cmv1.NewRESTClient(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := local.New(local.Config{Cluster: "cluster1", ClusterID: 1, NodeName: "n1", Kube: kube.Client, Identities: rc, State: st})
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Go(t, w.Run)
	cs := kube.Client

	node, err := cs.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec: corev1.NodeSpec{PodCIDR: "10.1.1.0/24", PodCIDRs: []string{"10.1.1.0/24", "fd00:1:0:1::/64"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}, {Type: corev1.NodeInternalIP, Address: "2001:db8:1::10"}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(t.Context(), node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name, nodeName, hostIP string, ips ...string) {
		t.Helper()
		p := kube.CreatePod(t, "default", name, map[string]string{"app": name}, corev1.PodSpec{NodeName: nodeName}, "", "")
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ips[0], HostIP: hostIP, HostIPs: []corev1.HostIP{{IP: hostIP}}}
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("x-wing", "n1", "192.168.1.10", "10.1.1.5", "fd00:1:0:1::5")
	pod("y-wing", "n2", "2001:db8:1::11", "fd00:1:0:2::6")

	dual := corev1.IPFamilyPolicyRequireDualStack
	svc, err := cs.CoreV1().Services("default").Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "rebel-base"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "x-wing"}, IPFamilyPolicy: &dual,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			Ports:      []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	name, proto, port := "http", corev1.ProtocolTCP, int32(8080)
	for typ, ip := range map[discoveryv1.AddressType]string{discoveryv1.AddressTypeIPv4: "10.1.1.5", discoveryv1.AddressTypeIPv6: "fd00:1:0:1::5"} {
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "rebel-base-" + strings.ToLower(string(typ)),
				Labels: map[string]string{discoveryv1.LabelServiceName: "rebel-base"}},
			AddressType: typ, Ports: []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &port}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}},
		}
		if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(t.Context(), es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// summary is the state of the local cluster, one line per fact.
	summary := func(sn *state.Snapshot) []string {
		var out []string
		for _, r := range sn.IPCache() {
			out = append(out, fmt.Sprintf("ip %v %s/%s host %v", r.Prefix, r.Namespace, r.Pod, r.HostIP))
		}
		for _, n := range sn.Nodes("cluster1") {
			var addrs []string
			for _, a := range n.Node.IPAddresses {
				addrs = append(addrs, a.IP.String())
			}
			out = append(out, fmt.Sprintf("node %s %v %v", n.Name, n.Node.PodCIDRs(), addrs))
		}
		for _, e := range sn.Endpoints() {
			out = append(out, fmt.Sprintf("endpoint %s/%s %v", e.Namespace, e.Name, e.IPs))
		}
		for k, s := range desired.Services(sn, "cluster1") {
			if s.Name != "rebel-base" {
				continue // the kube-apiserver's own Service
			}
			var bes []string
			for _, b := range s.Backends {
				bes = append(bes, netip.AddrPortFrom(b.Addr, b.Port).String())
			}
			out = append(out, fmt.Sprintf("frontend %v %v", netip.AddrPortFrom(k.Addr, k.Port), bes))
		}
		sort.Strings(out)
		return out
	}
	v4, v6 := svc.Spec.ClusterIPs[0], svc.Spec.ClusterIPs[1]
	want := []string{
		"endpoint default/x-wing [10.1.1.5 fd00:1:0:1::5]",
		fmt.Sprintf("frontend %s:80 [10.1.1.5:8080]", v4),
		fmt.Sprintf("frontend [%s]:80 [[fd00:1:0:1::5]:8080]", v6),
		"ip 10.1.1.5/32 default/x-wing host 192.168.1.10",
		"ip fd00:1:0:1::5/128 default/x-wing host 192.168.1.10",
		"ip fd00:1:0:2::6/128 default/y-wing host 2001:db8:1::11",
		"node n1 [10.1.1.0/24 fd00:1:0:1::/64] [192.168.1.10 2001:db8:1::10]",
	}
	slices.Sort(want)
	waitState(t, st, summary, want)

	x, err := cs.CoreV1().Pods("default").Get(t.Context(), "x-wing", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	x.Status.PodIPs = x.Status.PodIPs[:1]
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(t.Context(), x, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want = slices.DeleteFunc(want, func(s string) bool { return s == "ip fd00:1:0:1::5/128 default/x-wing host 192.168.1.10" })
	for i, s := range want {
		if s == "endpoint default/x-wing [10.1.1.5 fd00:1:0:1::5]" {
			want[i] = "endpoint default/x-wing [10.1.1.5]"
		}
	}
	waitState(t, st, summary, want)
}

func waitState(t *testing.T, st *state.State, summary func(*state.Snapshot) []string, want []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := summary(st.Snapshot())
		if cmp.Equal(want, got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the local cluster's state (-want +got):\n%s", cmp.Diff(want, got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
