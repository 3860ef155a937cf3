package server_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/localapi"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
)

// Policies written to the kube-apiserver reach the datapath: a
// NetworkPolicy on a named port, a policy of the project's kind reaching a
// peer cluster's identity, CIDR identities in the ipcache, invalid parts
// reported as Events and in the API, and a deleted policy lifting
// isolation.
func testPolicies(t *testing.T, kube *k8stest.Cluster) {
	const ns, node = "pol", "node-pol"
	kube.CreateNamespace(t, ns)
	db := kube.CreatePod(t, ns, "db", map[string]string{"app": "db"}, corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
		Name: "pg", Image: "pg", Ports: []corev1.ContainerPort{{Name: "postgres", ContainerPort: 5432}},
	}}}, "10.1.7.10", "192.168.1.7")
	client := kube.CreatePod(t, ns, "client", map[string]string{"app": "client"}, corev1.PodSpec{NodeName: node}, "10.1.7.11", "192.168.1.7")
	allocate(t, kube, db, 65700)
	allocate(t, kube, client, 65701)
	peer := startPeerWithNode(t, "cluster6", 6)
	const remoteClient = 6<<16 + 1
	peer.Put(t, peer.Env.Paths.Identity(remoteClient), "k8s:app=client;k8s:io.cilium.k8s.policy.cluster=cluster6;k8s:io.kubernetes.pod.namespace=pol;")
	peer.Synced()
	b := startAgent(t, kube, node, nil)
	b.connect(t, peer)

	dbPolicy := func() (datapath.EndpointPolicy, bool) {
		var got localapi.PoliciesResponse
		b.get(t, "/v1/policies", &got)
		for _, e := range got.Endpoints {
			if e.Endpoint == ns+"/db" {
				held, _ := b.agent.Datapath.Policies().List(t.Context())
				p, ok := held[e.DatapathID]
				return p, ok
			}
		}
		return datapath.EndpointPolicy{}, false
	}
	b.waitAPI(t)
	eventually(t, "db's policy in the datapath, not enforced", func() bool {
		p, ok := dbPolicy()
		return ok && p.Identity == 65700 && !p.EnforceIngress && p.Allows(remoteClient, true, 6, 22)
	})

	tcp := corev1.ProtocolTCP
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: new(intstr.FromString("postgres"))}},
		}},
	}}
	if _, err := kube.Client.NetworkingV1().NetworkPolicies(ns).Create(t.Context(), np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NetworkPolicy: local client allowed on postgres only, the peer's client not", func() bool {
		p, ok := dbPolicy()
		return ok && p.EnforceIngress && p.Allows(65701, true, 6, 5432) && !p.Allows(65701, true, 6, 5433) &&
			!p.Allows(remoteClient, true, 6, 5432) && !p.Allows(identity.ReservedWorld, true, 6, 5432)
	})

	idc, err := cmv1.NewRESTClient(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	cmnp := &cmv1.ClusterMeshNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmv1.SchemeGroupVersion.String(), Kind: "ClusterMeshNetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "clients-everywhere", Namespace: ns},
		Spec: &cmv1.PolicyRule{
			EndpointSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress: []cmv1.IngressRule{
				{FromEndpoints: []metav1.LabelSelector{{MatchLabels: map[string]string{"app": "client"},
					MatchExpressions: []metav1.LabelSelectorRequirement{{Key: identity.ClusterLabelKey, Operator: metav1.LabelSelectorOpExists}}}},
					ToPorts: []cmv1.PortRule{{Ports: []cmv1.PortProtocol{{Port: "5432", Protocol: "TCP"}}}}},
				{FromEntities: []string{"galaxy"}},
			},
			Egress: []cmv1.EgressRule{{ToCIDRSet: []cmv1.CIDRRule{{Cidr: "172.16.0.0/12", ExceptCIDRs: []string{"172.16.5.0/24"}}}}},
		},
	}
	if err := idc.Post().Namespace(ns).Resource(cmv1.NetworkPolicyResource.Resource).Body(cmnp).Do(t.Context()).Error(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "policy kind: the peer's client allowed, CIDR identities in the ipcache", func() bool {
		p, ok := dbPolicy()
		if !ok || !p.Allows(remoteClient, true, 6, 5432) || !p.EnforceEgress {
			return false
		}
		ipc, _ := b.agent.Datapath.IPCache().List(t.Context())
		cidr, ok1 := ipc[netipPrefix("172.16.0.0/12")]
		except, ok2 := ipc[netipPrefix("172.16.5.0/24")]
		// The same identities in the datapath's table of rules by address.
		ids, _ := b.agent.Datapath.CIDRIdentities().List(t.Context())
		return ok1 && ok2 && p.Allows(cidr.Identity, false, 6, 443) && !p.Allows(except.Identity, false, 6, 443) &&
			ids[netipPrefix("172.16.0.0/12")] == cidr.Identity && ids[netipPrefix("172.16.5.0/24")] == except.Identity
	})
	var got localapi.PoliciesResponse
	b.get(t, "/v1/policies", &got)
	if ps := got.Problems["cmnp/"+ns+"/clients-everywhere"]; len(ps) != 1 || ps[0].Reason != "UnknownEntity" || !strings.Contains(ps[0].Message, "galaxy") {
		t.Fatalf("/v1/policies problems = %+v, want the unknown entity galaxy", got.Problems)
	}
	// The trace names both policies' rules, from the engine the
	// controller owns (GET /v1/policy/trace through Inspect).
	var tr localapi.TraceResponse
	b.get(t, "/v1/policy/trace?from="+ns+"/client&to="+ns+"/db&port=5432", &tr)
	if tr.Ingress == nil || !tr.Ingress.Allowed || tr.Ingress.Reason != "allowed by cmnp/"+ns+"/clients-everywhere spec.ingress[0], k8s/"+ns+"/db spec.ingress[0]" {
		t.Errorf("trace client -> db:5432: %+v, want allowed by both policies' first ingress rule", tr.Ingress)
	}
	b.get(t, "/v1/policy/trace?from="+ns+"/client&to="+ns+"/db&port=5433", &tr)
	if tr.Ingress == nil || tr.Ingress.Allowed || len(tr.Ingress.IsolatedBy) != 2 || tr.Egress == nil || !tr.Egress.Allowed {
		t.Errorf("trace client -> db:5433: ingress %+v egress %+v, want denied on ingress, isolated by both policies", tr.Ingress, tr.Egress)
	}
	eventually(t, "a Warning Event on the invalid policy", func() bool {
		evs, err := kube.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == "clients-everywhere" && ev.Reason == "PolicyInvalid" && strings.Contains(ev.Message, "galaxy") {
				return true
			}
		}
		return false
	})

	if err := kube.Client.NetworkingV1().NetworkPolicies(ns).Delete(t.Context(), "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := idc.Delete().Namespace(ns).Resource(cmv1.NetworkPolicyResource.Resource).Name("clients-everywhere").Do(t.Context()).Error(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "policies deleted: db not isolated, CIDR identities gone", func() bool {
		p, ok := dbPolicy()
		ipc, _ := b.agent.Datapath.IPCache().List(t.Context())
		_, cidrLeft := ipc[netipPrefix("172.16.0.0/12")]
		return ok && !p.EnforceIngress && !p.EnforceEgress && !cidrLeft
	})
}
