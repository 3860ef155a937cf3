package server_test

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
)

// backendsOf returns the backends the datapath holds for clusterIP:80/TCP
// as sorted "ip:port@cluster" strings (nil when the frontend is absent).
func backendsOf(t *testing.T, b *agentBed, clusterIP string) []string {
	t.Helper()
	got, err := b.agent.Datapath.Services().List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	svc, ok := got[datapath.ServiceKey{Addr: netip.MustParseAddr(clusterIP), Port: 80, Protocol: "TCP"}]
	if !ok {
		return nil
	}
	out := []string{}
	for _, be := range svc.Backends {
		out = append(out, fmt.Sprintf("%s:%d@%s", be.Addr, be.Port, be.Cluster))
	}
	sort.Strings(out)
	return out
}

// waitBackends waits until the datapath holds exactly want for the
// frontend, and says what it held when it never does.
func waitBackends(t *testing.T, b *agentBed, clusterIP, what string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := backendsOf(t, b, clusterIP)
		if got != nil && slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: datapath backends of %s:80 = %v, want %v", what, clusterIP, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startPeerWithNode starts peer name with one node n1 owning
// 10.<id>.1.0/24.
func startPeerWithNode(t *testing.T, name string, id uint32) *meshtest.Peer {
	p := meshtest.StartPeer(t, name, id)
	p.Put(t, p.Env.Paths.Node(name, "n1"), peerNode(name, id, 1))
	return p
}

func svcKey(p *meshtest.Peer, ns, name string) string { return p.Env.Paths.Service(p.Name, ns, name) }

// Remote backends of two peers are merged into the local Service; a peer
// that stops exporting (global=false deletes its key; shared=false is
// written by some exporters) is removed; a backend outside the peer's own
// pod CIDRs is never used.
func testGlobalMerge(t *testing.T, kube *k8stest.Cluster) {
	const ns = "merge"
	kube.CreateNamespace(t, ns)
	ip := createService(t, kube, ns, "rebel-base", map[string]string{"service.cilium.io/global": "true"})
	legacyIP := createService(t, kube, ns, "legacy", map[string]string{"io.cilium/global-service": "true"})
	kube.SetEndpointSlice(t, ns, "rebel-base", 8080, k8stest.Endpoint{IP: "10.1.1.5", Ready: true})
	c2, c3 := startPeerWithNode(t, "cluster2", 2), startPeerWithNode(t, "cluster3", 3)
	// 10.1.1.99 is cluster1's: cluster2 may not steer clients to it.
	c2.Put(t, svcKey(c2, ns, "rebel-base"), peerService(c2, ns, "rebel-base", true, "10.2.1.5", "10.1.1.99"))
	c2.Put(t, svcKey(c2, ns, "legacy"), peerService(c2, ns, "legacy", true, "10.2.1.6"))
	c3.Put(t, svcKey(c3, ns, "rebel-base"), peerService(c3, ns, "rebel-base", true, "10.3.1.5"))
	c2.Synced()
	c3.Synced()
	b := startAgent(t, kube, "node-merge", nil)
	b.connect(t, c2)
	b.connect(t, c3)
	waitBackends(t, b, ip, "merged from two peers", "10.1.1.5:8080@cluster1", "10.2.1.5:8080@cluster2", "10.3.1.5:8080@cluster3")
	waitBackends(t, b, legacyIP, "legacy annotation", "10.2.1.6:8080@cluster2")

	var api []localapi.ServiceEntry
	b.get(t, "/v1/services", &api)
	found := false
	for _, e := range api {
		if e.Namespace == ns && e.Name == "rebel-base" {
			found = e.Frontend == ip+":80/TCP" && len(e.Backends) == 3
		}
	}
	if !found {
		t.Fatalf("/v1/services has no %s:80/TCP with 3 backends: %+v", ip, api)
	}

	c2.Delete(t, svcKey(c2, ns, "rebel-base")) // cluster2 set global=false
	waitBackends(t, b, ip, "cluster2 no longer global", "10.1.1.5:8080@cluster1", "10.3.1.5:8080@cluster3")
	c3.Put(t, svcKey(c3, ns, "rebel-base"), peerService(c3, ns, "rebel-base", false, "10.3.1.5"))
	waitBackends(t, b, ip, "cluster3 shared=false", "10.1.1.5:8080@cluster1")
	c3.Put(t, svcKey(c3, ns, "rebel-base"), peerService(c3, ns, "rebel-base", true, "10.3.1.5"))
	waitBackends(t, b, ip, "cluster3 shared again", "10.1.1.5:8080@cluster1", "10.3.1.5:8080@cluster3")
	annotate(t, kube, ns, "rebel-base", nil)
	waitBackends(t, b, ip, "local Service no longer global", "10.1.1.5:8080@cluster1")
}

// Affinity: local uses remote backends only when no ready local backend is
// left, remote is the mirror image, none and empty use all.
func testAffinity(t *testing.T, kube *k8stest.Cluster) {
	const ns, name = "affinity", "echo"
	global := func(kv ...string) map[string]string {
		m := map[string]string{"service.cilium.io/global": "true"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	kube.CreateNamespace(t, ns)
	ip := createService(t, kube, ns, name, global("service.cilium.io/affinity", "local"))
	kube.SetEndpointSlice(t, ns, name, 8080, k8stest.Endpoint{IP: "10.1.2.5", Ready: true})
	p := startPeerWithNode(t, "cluster4", 4)
	p.Put(t, svcKey(p, ns, name), peerService(p, ns, name, true, "10.4.1.5"))
	p.Synced()
	b := startAgent(t, kube, "node-affinity", nil)
	b.connect(t, p)
	const local, remote = "10.1.2.5:8080@cluster1", "10.4.1.5:8080@cluster4"

	waitBackends(t, b, ip, "local: local backends only", local)
	kube.SetEndpointSlice(t, ns, name, 8080, k8stest.Endpoint{IP: "10.1.2.5", Ready: false, Terminating: true})
	waitBackends(t, b, ip, "local: every local backend gone, remote used", remote)
	kube.SetEndpointSlice(t, ns, name, 8080, k8stest.Endpoint{IP: "10.1.2.5", Ready: true})
	waitBackends(t, b, ip, "local: local back, remote dropped", local)

	annotate(t, kube, ns, name, global("service.cilium.io/affinity", "remote"))
	waitBackends(t, b, ip, "remote: remote backends only", remote)
	p.Delete(t, svcKey(p, ns, name))
	waitBackends(t, b, ip, "remote: no remote backend left, local used", local)
	p.Put(t, svcKey(p, ns, name), peerService(p, ns, name, true, "10.4.1.5"))
	waitBackends(t, b, ip, "remote: remote back", remote)

	annotate(t, kube, ns, name, global("service.cilium.io/affinity", "none"))
	waitBackends(t, b, ip, "none: all", local, remote)
	annotate(t, kube, ns, name, global("service.cilium.io/affinity", ""))
	waitBackends(t, b, ip, "empty: all", local, remote)
	annotate(t, kube, ns, name, global("io.cilium/service-affinity", "local"))
	waitBackends(t, b, ip, "legacy spelling of local", local)
}
