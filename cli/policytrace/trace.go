package policytrace

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/agent/policy"
	"github.com/clustermesh/clustermesh/cli/agents"
)

// Verdicts of a Result.
const (
	Allowed = "allowed"
	Denied  = "denied"
	Unknown = "unknown"
)

// Query is what to trace. From and To are [cluster/]namespace/pod; a
// missing cluster is FromCluster or ToCluster (when empty: the cluster of
// the agents, if they are all of one cluster).
type Query struct {
	From, To               string
	FromCluster, ToCluster string
	Port                   uint16
	Protocol               string // TCP, UDP or SCTP
}

// ParsePort reads --port: <port>[/<protocol>], TCP by default.
func ParsePort(s string) (uint16, string, error) {
	num, proto, _ := strings.Cut(s, "/")
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > 65535 {
		return 0, "", fmt.Errorf("--port %q: want <port>[/<protocol>] with a port 1-65535, like 80/TCP", s)
	}
	proto = strings.ToUpper(proto)
	switch proto {
	case "":
		proto = "TCP"
	case "TCP", "UDP", "SCTP":
	default:
		return 0, "", fmt.Errorf("--port %q: protocol %q is not TCP, UDP or SCTP", s, proto)
	}
	return uint16(n), proto, nil
}

// End is one end of the traced flow.
type End struct {
	localapi.PodRef
	Identity uint32   `json:"identity,omitempty"`
	Labels   string   `json:"labels,omitempty"`
	IPs      []string `json:"ips,omitempty"`
	// Node is the node whose agent hosts the pod ("" if no agent asked
	// hosts it).
	Node string `json:"node,omitempty"`
}

// Side is the verdict of one direction, by the agent of the pod's node.
type Side struct {
	Cluster string       `json:"cluster"`
	Node    string       `json:"node"`
	Trace   policy.Trace `json:"trace"`
}

// Result is the answer of policy trace.
type Result struct {
	From     End    `json:"from"`
	To       End    `json:"to"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"`
	// Egress is the source's agent's verdict, Ingress the destination's;
	// nil when not evaluated (NotEvaluated says why).
	Egress  *Side  `json:"egress,omitempty"`
	Ingress *Side  `json:"ingress,omitempty"`
	Verdict string `json:"verdict"`
	// Notes: sides not evaluated and why, agents that could not be asked.
	Notes []string `json:"notes,omitempty"`
}

// Trace asks every agent of src the trace of q and merges their answers.
func Trace(ctx context.Context, src []agents.Agent, q Query) (Result, error) {
	var clusters []string
	var notes []string
	live := src[:0:0]
	for _, a := range src {
		var st agents.Status
		if err := a.Get(ctx, "/v1/status", nil, &st); err != nil {
			notes = append(notes, fmt.Sprintf("node %s not asked: %v", a.Node, err))
			continue
		}
		if !slices.Contains(clusters, st.Cluster) {
			clusters = append(clusters, st.Cluster)
		}
		live = append(live, a)
	}
	if len(live) == 0 {
		return Result{}, fmt.Errorf("no agent could be asked: %s", strings.Join(notes, "; "))
	}
	slices.Sort(clusters)
	only := ""
	if len(clusters) == 1 {
		only = clusters[0]
	}
	from, err := localapi.ParsePodRef(q.From, cmpOr(q.FromCluster, q.ToCluster, only))
	if err != nil {
		return Result{}, fmt.Errorf("--from: %w", err)
	}
	to, err := localapi.ParsePodRef(q.To, cmpOr(q.ToCluster, only))
	if err != nil {
		return Result{}, fmt.Errorf("--to: %w", err)
	}
	for _, r := range []struct {
		flag string
		ref  localapi.PodRef
	}{{"--from", from}, {"--to", to}} {
		if r.ref.Cluster == "" {
			return Result{}, fmt.Errorf("%s %s: the agents asked are of clusters %s; write the pod as <cluster>/<namespace>/<pod>",
				r.flag, r.ref.Namespace+"/"+r.ref.Name, strings.Join(clusters, ", "))
		}
	}
	res := Result{From: End{PodRef: from}, To: End{PodRef: to}, Port: q.Port, Protocol: q.Protocol, Notes: notes}
	params := url.Values{localapi.ParamFrom: {from.String()}, localapi.ParamTo: {to.String()},
		localapi.ParamPort: {strconv.Itoa(int(q.Port))}, localapi.ParamProtocol: {q.Protocol}}
	var errs []error
	for _, a := range live {
		var tr localapi.TraceResponse
		if err := a.Get(ctx, "/v1/policy/trace", params, &tr); err != nil {
			errs = append(errs, err)
			res.Notes = append(res.Notes, fmt.Sprintf("node %s: %v", a.Node, err))
			continue
		}
		fill(&res.From, tr.From, tr.Node)
		fill(&res.To, tr.To, tr.Node)
		if tr.Egress != nil && res.Egress == nil {
			res.Egress = &Side{Cluster: tr.Cluster, Node: tr.Node, Trace: *tr.Egress}
		}
		if tr.Ingress != nil && res.Ingress == nil {
			res.Ingress = &Side{Cluster: tr.Cluster, Node: tr.Node, Trace: *tr.Ingress}
		}
	}
	if len(errs) == len(live) {
		return Result{}, fmt.Errorf("no agent answered the trace: %w", errors.Join(errs...))
	}
	for _, e := range []struct {
		end  End
		side *Side
		dir  string
	}{{res.From, res.Egress, "egress"}, {res.To, res.Ingress, "ingress"}} {
		if e.side != nil {
			continue
		}
		switch {
		case e.end.Identity == 0 && !slices.Contains(clusters, e.end.Cluster):
			res.Notes = append(res.Notes, fmt.Sprintf("%s not evaluated: %s is not known to the agents asked (clusters %s); check the name",
				e.dir, e.end.PodRef, strings.Join(clusters, ", ")))
		case e.end.Node == "" && !slices.Contains(clusters, e.end.Cluster):
			res.Notes = append(res.Notes, fmt.Sprintf("%s not evaluated: no agent of cluster %s was asked (pass its kubeconfig context with --%s)",
				e.dir, e.end.Cluster, map[string]string{"egress": "from-context", "ingress": "context"}[e.dir]))
		case e.end.Node == "":
			res.Notes = append(res.Notes, fmt.Sprintf("%s not evaluated: no agent asked hosts %s (is it running, and on a node of the cluster?)", e.dir, e.end.PodRef))
		default:
			res.Notes = append(res.Notes, fmt.Sprintf("%s not evaluated: the agent of %s does not know the peer %s", e.dir, e.end.Node,
				map[string]localapi.PodRef{"egress": res.To.PodRef, "ingress": res.From.PodRef}[e.dir]))
		}
	}
	if res.From.Identity == 0 && res.To.Identity == 0 {
		return res, fmt.Errorf("neither %s nor %s is known to the agents asked (clusters %s): check the names", from, to, strings.Join(clusters, ", "))
	}
	res.Verdict = verdict(res.Egress, res.Ingress)
	return res, nil
}

// fill completes what is known of an end from one agent's answer.
func fill(e *End, got localapi.TraceEnd, node string) {
	if !got.Found {
		return
	}
	if e.Identity == 0 {
		e.Identity, e.Labels, e.IPs = got.Identity, got.Labels, got.IPs
	}
	if got.Local {
		e.Node = node
		e.Identity, e.Labels, e.IPs = got.Identity, got.Labels, got.IPs
	}
}

func verdict(sides ...*Side) string {
	out := Allowed
	for _, s := range sides {
		switch {
		case s != nil && !s.Trace.Allowed:
			return Denied
		case s == nil:
			out = Unknown
		}
	}
	return out
}

func cmpOr(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
