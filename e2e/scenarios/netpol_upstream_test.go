//go:build linux

package scenarios

import (
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/netpol"
)

// TestNetworkPolicyUpstreamAcrossClusters runs every scenario of the
// upstream NetworkPolicy suite (e2e/netpol's Scenarios, the 49 tests of
// k8s.io/kubernetes v1.37 test/e2e/network/netpol/network_policy.go) on
// the bed: the model spread over two connected dual-stack clusters
// (matrixWorld), each step's policies created through the kube-apiserver
// of both clusters and its relabels of pods and namespaces made there,
// every pair probed with real connections over IPv4 and IPv6 and compared
// with upstream's truth tables, unchanged.
//
// The agents run with --policy-default-local-cluster=false: a peer
// selected by labels is then selected in every cluster, so that a
// namespace of the model is one namespace across both clusters, as
// upstream's tables assume. The default (peers in the policy's own
// cluster unless a selector names the cluster) is the subject of
// TestNetworkPolicyMatrixAcrossClusters.
func TestNetworkPolicyUpstreamAcrossClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts whole clusters (kube-apiservers, controller managers, clustermesh-apiservers, agents, pods)")
	}
	log := &testLog{t: t}
	b := startBedWith(t, log, bed.Options{DualStack: true})
	w := newMatrixWorld(t, b, "--policy-default-local-cluster=false")
	failed := 0
	for _, sc := range netpol.Scenarios() {
		var policies []func(netpol.Addrs, int) []*networkingv1.NetworkPolicy
		for _, st := range sc.Steps {
			policies = append(policies, st.Policies)
		}
		for _, families := range familyRuns(w, policies...) {
			ok := t.Run(familiesName(families)+"/"+sc.Name, func(t *testing.T) {
				log.t = t
				start := time.Now()
				// Every scenario starts from no policy and the model's
				// labels, as upstream's cleanNetworkPolicies and
				// fresh namespaces: all pairs connect.
				w.clearPolicies(t)
				w.setLabels(t, nil, nil)
				w.check(t, families, sc.Steps[0].Probes, true)
				rounds := 0
				for i, st := range sc.Steps {
					w.setLabels(t, st.PodLabels, st.NsLabels)
					w.setPolicies(t, st.Policies(w, families[0]))
					n := w.check(t, families, st.Probes, false)
					rounds += n
					if len(sc.Steps) > 1 {
						b.Logf("    step %d: %d probes as expected (%d rounds)", i+1, len(st.Probes), n)
					}
				}
				b.Logf("    %s %s: %d pairs as expected in %d steps (%d rounds, %.1fs)", familiesName(families), sc.Name,
					len(w.pods)*(len(w.pods)-1), len(sc.Steps), rounds, time.Since(start).Seconds())
			})
			log.t = t
			if !ok {
				// Go on (each scenario starts from a clean state), unless
				// the bed itself is broken.
				if failed++; failed == 3 {
					t.Fatal("3 scenarios failed: stopping")
				}
			}
		}
	}
}
