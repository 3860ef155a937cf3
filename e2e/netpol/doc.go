// Package netpol checks Kubernetes NetworkPolicy semantics the way the
// upstream e2e suite (k8s.io/kubernetes test/e2e/network/netpol) does: a
// model of namespaces x, y, z with pods a, b, c, the suite's policies, and a
// probe of every pair of pods, compared with the suite's expected truth
// table. Here the probes are real connections through the eBPF datapath
// between network namespaces of one node, with each pod's policy computed
// by the agent's policy engine (the fast tier). The multi-cluster tier is
// e2e/scenarios' TestNetworkPolicyUpstreamAcrossClusters: the same
// scenarios with the model across two clusters of the bed (e2e/bed), the
// policies and relabels through the real kube-apiservers and agents.
//
// The model, the suite's policies and scenarios and the truth tables are
// the package's API (Scenarios, Reachability and the policy builders), so
// that the bed tier runs the same scenarios; the fast tier is its tests,
// which need root (they load BPF programs and create network namespaces),
// like the datapath's own tests.
package netpol
