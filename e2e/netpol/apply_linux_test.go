package netpol

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/policy"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// apply computes every pod's policy from the step's policies with the
// agent's policy engine and writes it into the datapath, with the CIDR
// identities of the policies (the ipcache for addresses outside the pods,
// and cidr_ids for rules by address). The pods and namespaces have the
// model's labels, or the step's where it relabels them.
func (w *world) apply(t *testing.T, st Step, family int) {
	t.Helper()
	e := policy.NewEngine(policy.Config{Cluster: "cluster1"})
	named := map[string][]schema.NamedPort{}
	for _, np := range namedPorts() {
		named[np.Name] = []schema.NamedPort{np}
	}
	for _, p := range w.pods {
		ns := p.name.Namespace()
		podL, nsL := PodLabels(p.name), NamespaceLabels(ns)
		if l, ok := st.PodLabels[p.name]; ok {
			podL = l
		}
		if l, ok := st.NsLabels[ns]; ok {
			nsL = l
		}
		labels := identity.PodLabels("cluster1", ns, "default", podL, nsL)
		e.UpsertIdentity(policy.Identity{ID: p.id, Labels: labels})
		e.UpsertEndpoint(policy.Endpoint{Key: string(p.name), Namespace: ns, ID: p.id, Labels: labels, NamedPorts: namedPorts()})
	}
	e.SetNamedPorts(named)
	for _, np := range st.Policies(w, family) {
		key, c := e.CompileNetworkPolicy(np)
		if ps := c.Problems(); len(ps) > 0 {
			t.Fatalf("policy %s/%s: %v", np.Namespace, np.Name, ps)
		}
		e.UpsertPolicy(key, c)
	}
	for _, p := range w.pods {
		ep, ok := e.EndpointPolicy(string(p.name))
		if !ok {
			t.Fatalf("the engine has no policy for %s", p.name)
		}
		cfg := bpf.EndpointConfig{Identity: uint32(ep.Identity), EnforceIngress: ep.EnforceIngress, EnforceEgress: ep.EnforceEgress}
		must(t, w.d.EndpointConfigs().Update(p.ep, cfg))
		must(t, w.d.SetPolicy(p.ep, bpfRules(ep.Rules)))
	}
	w.setCIDRs(t, e.CIDRIdentities())
}

func bpfRules(rules []datapath.PolicyRule) []bpf.PolicyRule {
	out := make([]bpf.PolicyRule, len(rules))
	for i, r := range rules {
		out[i] = bpf.PolicyRule{Identity: uint32(r.Identity), Ingress: r.Ingress, Proto: r.Proto, Port: r.Port, EndPort: r.EndPort, Deny: r.Deny, ByAddress: r.ByAddress}
	}
	return out
}

// setCIDRs makes the datapath's CIDR identities those of the engine: in
// cidr_ids all of them, in the ipcache those that are not a pod's own
// address (a pod's entry is its identity: neither replaced nor, once no
// policy names the address, removed).
func (w *world) setCIDRs(t *testing.T, want map[netip.Prefix]identity.NumericIdentity) {
	t.Helper()
	pods := map[netip.Prefix]bool{}
	for _, p := range w.pods {
		pods[netip.PrefixFrom(p.ip4, 32)], pods[netip.PrefixFrom(p.ip6, 128)] = true, true
	}
	held, err := w.d.CIDRIdentities().List()
	must(t, err)
	for pfx := range held {
		if _, ok := want[pfx]; !ok {
			must(t, w.d.CIDRIdentities().Delete(pfx))
			if !pods[pfx] {
				must(t, w.d.IPCache().Delete(pfx))
			}
		}
	}
	for pfx, id := range want {
		must(t, w.d.CIDRIdentities().Update(pfx, uint32(id)))
		if !pods[pfx] {
			must(t, w.d.IPCache().Update(pfx, bpf.IPCacheValue{Identity: uint32(id)}))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// probeCase is one probe of the matrix: a port and protocol, and the
// truth table expected for every pair of pods.
type probeCase struct {
	port  uint16
	proto string
	want  *Reachability
}

// check probes every pair of pods (in parallel) over family for c and
// fails with the truth table's diff where they disagree.
func (w *world) check(t *testing.T, family int, c probeCase) {
	t.Helper()
	observed := map[Pod]map[Pod]bool{}
	reasons := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 24)
	for _, p := range w.pods {
		observed[p.name] = map[Pod]bool{} // before any probe writes
	}
	for _, from := range w.pods {
		for _, to := range w.pods {
			if from == to {
				continue
			}
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				ok, err := w.probe(t.Context(), from, to, family, c.port, c.proto)
				mu.Lock()
				defer mu.Unlock()
				observed[from.name][to.name] = ok
				reasons[string(from.name)+"->"+string(to.name)] = err
			})
		}
	}
	wg.Wait()
	table, wrong := c.want.Diff(observed)
	if wrong > 0 {
		var why string
		for _, from := range w.pods {
			for _, to := range w.pods {
				k := string(from.name) + "->" + string(to.name)
				if from != to && observed[from.name][to.name] != c.want.Expected(from.name, to.name) {
					why += fmt.Sprintf("  %s: %v\n", k, reasons[k])
				}
			}
		}
		t.Errorf("IPv%d %s/%d: %d of %d pairs differ from the expected truth table (X: connected, expected refused; -: refused, expected connected):\n%s%s",
			family, c.proto, c.port, wrong, len(w.pods)*(len(w.pods)-1), table, why)
	}
}
