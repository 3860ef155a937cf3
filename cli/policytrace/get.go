package policytrace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/cli/agents"
)

// EndpointPolicies is one endpoint's entry of policy get, with the agent
// that computes it.
type EndpointPolicies struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	localapi.EndpointPoliciesEntry
}

// GetResult is the answer of policy get.
type GetResult struct {
	Endpoints []EndpointPolicies `json:"endpoints"`
	// Notes: agents that could not be asked.
	Notes []string `json:"notes,omitempty"`
}

// Get asks every agent the policies of its endpoints (only pod,
// namespace/name, when not empty).
func Get(ctx context.Context, src []agents.Agent, pod string) (GetResult, error) {
	var q url.Values
	if pod != "" {
		if _, err := localapi.ParsePodRef(pod, ""); err != nil || strings.Count(pod, "/") != 1 {
			return GetResult{}, fmt.Errorf("pod %q: write it as <namespace>/<pod> (a pod of the cluster of --context)", pod)
		}
		q = url.Values{"pod": {pod}}
	}
	out := GetResult{Endpoints: []EndpointPolicies{}}
	var errs []error
	for _, ans := range agents.All[[]localapi.EndpointPoliciesEntry](ctx, src, "/v1/policy/endpoints", q) {
		if ans.Err != nil {
			errs = append(errs, ans.Err)
			out.Notes = append(out.Notes, fmt.Sprintf("node %s: %v", ans.Node, ans.Err))
			continue
		}
		for _, e := range ans.Value {
			out.Endpoints = append(out.Endpoints, EndpointPolicies{Cluster: ans.Cluster, Node: ans.Node, EndpointPoliciesEntry: e})
		}
	}
	if len(errs) == len(src) {
		return out, fmt.Errorf("no agent answered: %w", errors.Join(errs...))
	}
	if pod != "" && len(out.Endpoints) == 0 {
		return out, fmt.Errorf("pod %s is not an endpoint of any agent asked: check the name and the --context", pod)
	}
	return out, nil
}

// WriteGetTable writes a GetResult for people: a line per endpoint and
// policy.
func WriteGetTable(w io.Writer, r GetResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tENDPOINT\tIDENTITY\tINGRESS\tEGRESS\tPOLICY\tRULES")
	onOff := func(b bool) string {
		if b {
			return "enforced"
		}
		return "open"
	}
	for _, e := range r.Endpoints {
		if len(e.Policies) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t-\t-\n", e.Node, e.Endpoint, e.Identity, onOff(e.EnforceIngress), onOff(e.EnforceEgress))
		}
		for _, p := range e.Policies {
			var rules []string
			for _, ru := range p.Rules {
				rules = append(rules, ru.Rule)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.Node, e.Endpoint, e.Identity, onOff(e.EnforceIngress), onOff(e.EnforceEgress),
				p.Policy, strings.Join(rules, ", "))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		if _, err := fmt.Fprintf(w, "# %s\n", n); err != nil {
			return err
		}
	}
	return nil
}
