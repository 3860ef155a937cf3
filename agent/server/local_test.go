package server_test

import (
	"net/netip"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/agent/localapi"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/identity/podlabels"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
)

// The local cluster: every pod IP with its identity (init until the
// apiserver allocated it), this node's pods as endpoints, nodes as host,
// remote-node and routing peers.
func testLocalCluster(t *testing.T, kube *k8stest.Cluster) {
	const ns = "local"
	kube.CreateNamespace(t, ns)
	kube.CreateNode(t, "node-local", "192.168.1.5", "10.1.5.0/24")
	kube.CreateNode(t, "node-other", "192.168.1.6", "10.1.6.0/24")
	xwing := kube.CreatePod(t, ns, "x-wing", map[string]string{"app": "x-wing"},
		corev1.PodSpec{NodeName: "node-local"}, "10.1.5.10", "192.168.1.5")
	kube.CreatePod(t, ns, "tie-fighter", map[string]string{"app": "tie"}, corev1.PodSpec{NodeName: "node-other"}, "10.1.6.10", "192.168.1.6")
	b := startAgent(t, kube, "node-local", nil)
	b.waitAPI(t)

	ipcache := func() map[netip.Prefix]uint32 {
		got, _ := b.agent.Datapath.IPCache().List(t.Context())
		out := map[netip.Prefix]uint32{}
		for p, e := range got {
			out[p] = uint32(e.Identity)
		}
		return out
	}
	pfx := netip.MustParsePrefix
	eventually(t, "pods with the init identity, nodes as host and remote-node", func() bool {
		got := ipcache()
		return got[pfx("10.1.5.10/32")] == uint32(identity.ReservedInit) && got[pfx("10.1.6.10/32")] == uint32(identity.ReservedInit) &&
			got[pfx("192.168.1.5/32")] == uint32(identity.ReservedHost) && got[pfx("192.168.1.6/32")] == uint32(identity.ReservedRemoteNode)
	})
	var eps []localapi.EndpointEntry
	b.get(t, "/v1/endpoints", &eps)
	if len(eps) != 1 || eps[0].Name != "x-wing" || eps[0].Identity != uint32(identity.ReservedInit) {
		t.Fatalf("/v1/endpoints = %+v, want only x-wing (this node) with the init identity", eps)
	}
	// The peers reconciler runs on its own: wait for it.
	eventually(t, "node-other is a routing peer", func() bool {
		peers, _ := b.agent.Datapath.Peers().List(t.Context())
		pe, ok := peers["cluster1/node-other"]
		return ok && pe.NodeIP == netip.MustParseAddr("192.168.1.6") && len(pe.PodCIDRs) == 1 && pe.WireguardPubKey != ""
	})
	peers, _ := b.agent.Datapath.Peers().List(t.Context())
	if _, self := peers["cluster1/node-local"]; self {
		t.Fatalf("this node is its own routing peer: %+v", peers)
	}

	// The clustermesh-apiserver allocates x-wing's identity.
	const id = 65600
	ls := allocate(t, kube, xwing, id)
	eventually(t, "x-wing's IP and endpoint get its identity", func() bool {
		var eps []localapi.EndpointEntry
		b.get(t, "/v1/endpoints", &eps)
		return ipcache()[pfx("10.1.5.10/32")] == id && len(eps) == 1 && eps[0].Identity == id
	})
	var ids []localapi.IdentityEntry
	b.get(t, "/v1/identities", &ids)
	if !containsID(ids, localapi.IdentityEntry{ID: id, Cluster: "cluster1", Labels: ls.SortedKVStoreString()}) {
		t.Fatalf("/v1/identities = %+v, want 65600 of cluster1", ids)
	}

	if err := kube.Client.CoreV1().Pods(ns).Delete(t.Context(), "x-wing", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted pod leaves the ipcache and the endpoints", func() bool {
		var eps []localapi.EndpointEntry
		b.get(t, "/v1/endpoints", &eps)
		_, left := ipcache()[pfx("10.1.5.10/32")]
		return !left && len(eps) == 0
	})
}

func containsID(ids []localapi.IdentityEntry, want localapi.IdentityEntry) bool {
	for _, x := range ids {
		if x == want {
			return true
		}
	}
	return false
}

// allocate creates the identity resource of pod's labels with number id,
// as the clustermesh-apiserver would, and returns the labels.
func allocate(t *testing.T, kube *k8stest.Cluster, pod *corev1.Pod, id int) identity.Labels {
	t.Helper()
	nsObj, err := kube.Client.CoreV1().Namespaces().Get(t.Context(), pod.Namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ls := podlabels.ForPod("cluster1", pod, nsObj)
	var strs []string
	for l := range ls.All() {
		strs = append(strs, l.String())
	}
	idc, err := cmv1.NewRESTClient(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmv1.CreateIdentity(t.Context(), idc, &cmv1.Identity{ObjectMeta: metav1.ObjectMeta{Name: strconv.Itoa(id)}, SecurityLabels: strs}); err != nil {
		t.Fatal(err)
	}
	return ls
}
