package localapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/clustermesh/clustermesh/agent/policy"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
)

// Parameters of GET /v1/policy/trace.
const (
	ParamFrom     = "from"     // [cluster/]namespace/pod
	ParamTo       = "to"       // [cluster/]namespace/pod
	ParamPort     = "port"     // 1-65535
	ParamProtocol = "protocol" // TCP (default), UDP, SCTP
)

// PodRef names a pod of the mesh: "cluster/namespace/name", or
// "namespace/name" in the cluster of whoever reads it.
type PodRef struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (r PodRef) String() string { return r.Cluster + "/" + r.Namespace + "/" + r.Name }

// ParsePodRef reads [cluster/]namespace/name; a missing cluster is
// defaultCluster.
func ParsePodRef(s, defaultCluster string) (PodRef, error) {
	parts := strings.Split(s, "/")
	switch {
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return PodRef{Cluster: defaultCluster, Namespace: parts[0], Name: parts[1]}, nil
	case len(parts) == 3 && parts[0] != "" && parts[1] != "" && parts[2] != "":
		return PodRef{Cluster: parts[0], Namespace: parts[1], Name: parts[2]}, nil
	}
	return PodRef{}, fmt.Errorf("pod %q: write it as <namespace>/<pod> or <cluster>/<namespace>/<pod>", s)
}

// TraceEnd is one end of a traced flow as this agent knows it.
type TraceEnd struct {
	PodRef
	// Found: the agent knows the pod (a local endpoint, or an ipcache
	// entry of its cluster); the rest is set only then.
	Found    bool     `json:"found"`
	Identity uint32   `json:"identity,omitempty"`
	Labels   string   `json:"labels,omitempty"`
	IPs      []string `json:"ips,omitempty"`
	// Local: the pod is an endpoint of this agent's node, whose policy
	// this agent computes.
	Local bool `json:"local"`
}

// TraceResponse is GET /v1/policy/trace: the verdicts this agent's policy
// engine gives a new flow from one pod to another, for each end that is
// an endpoint of its node (ingress of the destination, egress of the
// source); nil when the end is not.
type TraceResponse struct {
	Cluster  string        `json:"cluster"`
	Node     string        `json:"node"`
	From     TraceEnd      `json:"from"`
	To       TraceEnd      `json:"to"`
	Protocol string        `json:"protocol"`
	Port     uint16        `json:"port"`
	Ingress  *policy.Trace `json:"ingress,omitempty"`
	Egress   *policy.Trace `json:"egress,omitempty"`
}

// traceQuery is a parsed GET /v1/policy/trace.
type traceQuery struct {
	from, to PodRef
	proto    uint8
	protoS   string
	port     uint16
}

func (a *API) parseTrace(r *http.Request) (traceQuery, error) {
	q := r.URL.Query()
	var tq traceQuery
	var err error
	for _, p := range []struct {
		name string
		into *PodRef
	}{{ParamFrom, &tq.from}, {ParamTo, &tq.to}} {
		v := q.Get(p.name)
		if v == "" {
			return tq, fmt.Errorf("parameter %s is required: [cluster/]namespace/pod", p.name)
		}
		if *p.into, err = ParsePodRef(v, a.cfg.Cluster); err != nil {
			return tq, fmt.Errorf("parameter %s: %w", p.name, err)
		}
	}
	n, err := strconv.Atoi(q.Get(ParamPort))
	if err != nil || n < 1 || n > 65535 {
		return tq, fmt.Errorf("parameter %s %q: want a port number 1-65535", ParamPort, q.Get(ParamPort))
	}
	tq.port = uint16(n)
	tq.protoS = strings.ToUpper(q.Get(ParamProtocol))
	if tq.protoS == "" {
		tq.protoS = "TCP"
	}
	if tq.proto, err = policy.ParseProtocol(tq.protoS, policy.ProtoTCP); err != nil || tq.proto == policy.ProtoAny {
		return tq, fmt.Errorf("parameter %s %q: want TCP, UDP or SCTP", ParamProtocol, q.Get(ParamProtocol))
	}
	return tq, nil
}

var errNoPolicy = errors.New("this agent does not compute policy")

func (a *API) getTrace(w http.ResponseWriter, r *http.Request) {
	tq, err := a.parseTrace(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	resp, err := a.trace(r.Context(), tq)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, resp)
}

// trace answers a parsed trace query from one snapshot of the state and
// the policy engine.
func (a *API) trace(ctx context.Context, tq traceQuery) (TraceResponse, error) {
	if a.cfg.Policy == nil {
		return TraceResponse{}, errNoPolicy
	}
	sn := a.cfg.State.Snapshot()
	resp := TraceResponse{Cluster: a.cfg.Cluster, Node: a.cfg.Node, Protocol: tq.protoS, Port: tq.port,
		From: a.resolve(sn, tq.from), To: a.resolve(sn, tq.to)}
	if !resp.From.Local && !resp.To.Local {
		return resp, nil
	}
	err := a.cfg.Policy(ctx, func(e *policy.Engine) {
		if resp.To.Local && resp.From.Found {
			if t, ok := e.Trace(policy.TraceQuery{Endpoint: tq.to.Namespace + "/" + tq.to.Name, Peer: identity.NumericIdentity(resp.From.Identity),
				PeerAddr: firstAddr(resp.From.IPs), Ingress: true, Proto: tq.proto, Port: tq.port}); ok {
				resp.Ingress = &t
			}
		}
		if resp.From.Local && resp.To.Found {
			if t, ok := e.Trace(policy.TraceQuery{Endpoint: tq.from.Namespace + "/" + tq.from.Name, Peer: identity.NumericIdentity(resp.To.Identity),
				PeerAddr: firstAddr(resp.To.IPs), Proto: tq.proto, Port: tq.port}); ok {
				resp.Egress = &t
			}
		}
	})
	return resp, err
}

// resolve finds a pod: an endpoint of this node, or an ipcache entry of
// its cluster (any node, any cluster of the mesh).
func (a *API) resolve(sn *state.Snapshot, ref PodRef) TraceEnd {
	end := TraceEnd{PodRef: ref}
	if ref.Cluster == a.cfg.Cluster {
		if ep := sn.EndpointRow(ref.Namespace, ref.Name); ep != nil {
			end.Found, end.Local, end.Identity, end.Labels = true, true, uint32(ep.ID), ep.Labels.SortedKVStoreString()
			for _, ip := range ep.IPs {
				end.IPs = append(end.IPs, ip.String())
			}
			return end
		}
	}
	for _, row := range sn.IPCache() {
		if row.Cluster != ref.Cluster || row.Namespace != ref.Namespace || row.Pod != ref.Name || !row.Prefix.IsSingleIP() {
			continue
		}
		end.Found, end.Identity = true, uint32(row.ID)
		end.IPs = append(end.IPs, row.Prefix.Addr().String())
	}
	slices.Sort(end.IPs)
	if id := sn.IdentityRow(identity.NumericIdentity(end.Identity)); end.Found && id != nil {
		end.Labels = id.LabelsKey
	}
	return end
}

func firstAddr(ips []string) netip.Addr {
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			return a
		}
	}
	return netip.Addr{}
}

// EndpointPoliciesEntry is one element of GET /v1/policy/endpoints: a
// local endpoint, the enforcement of its computed policy and the policies
// that select it, with their rules that apply to it.
type EndpointPoliciesEntry struct {
	Endpoint       string                 `json:"endpoint"`
	Identity       uint32                 `json:"identity"`
	EnforceIngress bool                   `json:"enforceIngress"`
	EnforceEgress  bool                   `json:"enforceEgress"`
	Policies       []policy.PolicySummary `json:"policies"`
}

// getEndpointPolicies answers GET /v1/policy/endpoints[?pod=ns/name].
func (a *API) getEndpointPolicies(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Policy == nil {
		writeError(w, http.StatusServiceUnavailable, errNoPolicy)
		return
	}
	var only string
	if p := r.URL.Query().Get("pod"); p != "" {
		ref, err := ParsePodRef(p, a.cfg.Cluster)
		if err != nil || ref.Cluster != a.cfg.Cluster {
			writeError(w, http.StatusBadRequest, fmt.Errorf("parameter pod %q: want <namespace>/<pod> of this cluster", p))
			return
		}
		only = ref.Namespace + "/" + ref.Name
	}
	out := []EndpointPoliciesEntry{}
	err := a.cfg.Policy(r.Context(), func(e *policy.Engine) {
		for _, key := range e.Endpoints() {
			if only != "" && key != only {
				continue
			}
			ps, _ := e.EndpointPolicies(key)
			dp, _ := e.EndpointPolicy(key)
			out = append(out, EndpointPoliciesEntry{Endpoint: key, Identity: uint32(dp.Identity),
				EnforceIngress: dp.EnforceIngress, EnforceEgress: dp.EnforceEgress, Policies: ps})
		}
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, out)
}
