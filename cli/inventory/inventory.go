package inventory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/cli/agents"
)

// Identities is the answer of identity list.
type Identities struct {
	Identities []localapi.IdentityEntry `json:"identities"`
	Notes      []string                 `json:"notes,omitempty"`
}

// ListIdentities asks every agent its identities (local and remote) and
// merges them by ID; only those of cluster when not empty.
func ListIdentities(ctx context.Context, src []agents.Agent, cluster string) (Identities, error) {
	out := Identities{Identities: []localapi.IdentityEntry{}}
	seen := map[uint32]bool{}
	err := each(ctx, src, "/v1/identities", &out.Notes, func(_ agents.Answer[[]localapi.IdentityEntry], ids []localapi.IdentityEntry) {
		for _, id := range ids {
			if !seen[id.ID] && (cluster == "" || id.Cluster == cluster) {
				seen[id.ID] = true
				out.Identities = append(out.Identities, id)
			}
		}
	})
	slices.SortFunc(out.Identities, func(a, b localapi.IdentityEntry) int { return cmp.Compare(a.ID, b.ID) })
	return out, err
}

// each asks every agent path and hands each answer to fn; agents that
// fail are noted; it fails only when none answered.
func each[T any](ctx context.Context, src []agents.Agent, path string, notes *[]string, fn func(agents.Answer[T], T)) error {
	var errs []error
	for _, ans := range agents.All[T](ctx, src, path, nil) {
		if ans.Err != nil {
			errs = append(errs, ans.Err)
			if !slices.ContainsFunc(*notes, func(n string) bool { return strings.HasPrefix(n, "node "+ans.Node+": ") }) {
				*notes = append(*notes, fmt.Sprintf("node %s: %v", ans.Node, ans.Err)) // once per node
			}
			continue
		}
		fn(ans, ans.Value)
	}
	if len(src) == 0 {
		return fmt.Errorf("no agent to ask GET %s: no agent pod found (is the clustermesh-agent DaemonSet running? or pass --agent-socket)", path)
	}
	if len(errs) == len(src) {
		return fmt.Errorf("no agent answered GET %s: %w", path, errors.Join(errs...))
	}
	return nil
}

// WriteIdentities writes identities as a table.
func WriteIdentities(w io.Writer, r Identities) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCLUSTER\tLABELS")
	for _, id := range r.Identities {
		fmt.Fprintf(tw, "%d\t%s\t%s\n", id.ID, cmp.Or(id.Cluster, "-"), strings.TrimSuffix(id.Labels, ";"))
	}
	return flush(tw, w, r.Notes)
}

func flush(tw *tabwriter.Writer, w io.Writer, notes []string) error {
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		if _, err := fmt.Fprintf(w, "# %s\n", n); err != nil {
			return err
		}
	}
	return nil
}

// Endpoint is a pod of a node with its identity and policy enforcement.
type Endpoint struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	localapi.EndpointEntry
	// EnforceIngress and EnforceEgress: a policy isolates the pod in that
	// direction (its computed policy, GET /v1/policies).
	EnforceIngress bool `json:"enforceIngress"`
	EnforceEgress  bool `json:"enforceEgress"`
	// PolicyComputed: the agent has computed its policy (false for a pod
	// the policy engine has not seen yet).
	PolicyComputed bool `json:"policyComputed"`
}

// Endpoints is the answer of endpoint list.
type Endpoints struct {
	Endpoints []Endpoint `json:"endpoints"`
	Notes     []string   `json:"notes,omitempty"`
}

// ListEndpoints asks every agent its endpoints and their policies.
func ListEndpoints(ctx context.Context, src []agents.Agent) (Endpoints, error) {
	out := Endpoints{Endpoints: []Endpoint{}}
	var policies = map[string]map[string]localapi.EndpointPolicyEntry{} // node → endpoint
	_ = each(ctx, src, "/v1/policies", &out.Notes, func(ans agents.Answer[localapi.PoliciesResponse], r localapi.PoliciesResponse) {
		m := map[string]localapi.EndpointPolicyEntry{}
		for _, e := range r.Endpoints {
			m[e.Endpoint] = e
		}
		policies[ans.Node] = m
	})
	err := each(ctx, src, "/v1/endpoints", &out.Notes, func(ans agents.Answer[[]localapi.EndpointEntry], eps []localapi.EndpointEntry) {
		for _, e := range eps {
			ep := Endpoint{Cluster: ans.Cluster, Node: ans.Node, EndpointEntry: e}
			if p, ok := policies[ans.Node][e.Namespace+"/"+e.Name]; ok {
				ep.EnforceIngress, ep.EnforceEgress, ep.PolicyComputed = p.EnforceIngress, p.EnforceEgress, true
			}
			out.Endpoints = append(out.Endpoints, ep)
		}
	})
	slices.SortFunc(out.Endpoints, func(a, b Endpoint) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name), strings.Compare(a.Node, b.Node))
	})
	return out, err
}

// WriteEndpoints writes endpoints as a table.
func WriteEndpoints(w io.Writer, r Endpoints) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tENDPOINT\tIPS\tIDENTITY\tINGRESS\tEGRESS\tLABELS")
	enf := func(computed, b bool) string {
		switch {
		case !computed:
			return "pending"
		case b:
			return "enforced"
		}
		return "open"
	}
	for _, e := range r.Endpoints {
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%d\t%s\t%s\t%s\n", e.Node, e.Namespace, e.Name, strings.Join(e.IPs, ","), e.Identity,
			enf(e.PolicyComputed, e.EnforceIngress), enf(e.PolicyComputed, e.EnforceEgress), strings.TrimSuffix(e.Labels, ";"))
	}
	return flush(tw, w, r.Notes)
}

// Services is the answer of service list.
type Services struct {
	// Cluster and Node: the agent whose view is shown (every agent of a
	// cluster selects the same backends from the same state).
	Cluster  string                   `json:"cluster"`
	Node     string                   `json:"node"`
	Services []localapi.ServiceDetail `json:"services"`
	Notes    []string                 `json:"notes,omitempty"`
}

// ListServices asks the agents for their Services with every candidate
// backend and the selection; the first agent that answers is shown.
// Only global Services unless all.
func ListServices(ctx context.Context, src []agents.Agent, all bool) (Services, error) {
	out := Services{Services: []localapi.ServiceDetail{}}
	for _, a := range src {
		ans := agents.All[[]localapi.ServiceDetail](ctx, []agents.Agent{a}, "/v1/services/detail", nil)[0]
		if ans.Err != nil {
			out.Notes = append(out.Notes, fmt.Sprintf("node %s: %v", ans.Node, ans.Err))
			continue
		}
		out.Cluster, out.Node = ans.Cluster, ans.Node
		for _, s := range ans.Value {
			if all || s.Global {
				out.Services = append(out.Services, s)
			}
		}
		return out, nil
	}
	return out, fmt.Errorf("no agent answered GET /v1/services/detail: %s", strings.Join(out.Notes, "; "))
}

// WriteServices writes services as a table: a line per candidate backend.
func WriteServices(w io.Writer, r Services) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tAFFINITY\tFRONTENDS\tBACKEND\tCLUSTER\tREADY\tSELECTED\tWHY")
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	for _, s := range r.Services {
		name := s.Namespace + "/" + s.Name
		if !s.Global {
			name += " (local)"
		}
		fe := strings.Join(s.Frontends, ",")
		if len(s.Backends) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\tno backend\n", name, s.Affinity, fe)
		}
		for _, b := range s.Backends {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, s.Affinity, fe, b.Address, b.Cluster, yes(b.Ready), yes(b.Selected), b.Why)
		}
		for _, c := range slices.Sorted(maps.Keys(s.Rejected)) {
			n := s.Rejected[c]
			fmt.Fprintf(tw, "%s\t%s\t%s\t(%d)\t%s\t-\tno\taddresses the cluster does not own: rejected\n", name, s.Affinity, fe, n, c)
		}
	}
	if r.Node != "" {
		fmt.Fprintf(tw, "# as selected by the agent of %s/%s\n", r.Cluster, r.Node)
	}
	return flush(tw, w, r.Notes)
}
