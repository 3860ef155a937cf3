package localapi

import (
	"github.com/clustermesh/clustermesh/agent/policy"
)

// PoliciesResponse is GET /v1/policies.
type PoliciesResponse struct {
	Endpoints []EndpointPolicyEntry `json:"endpoints"`
	// Problems are the invalid parts of policies, which are ignored, by
	// policy ("k8s/<ns>/<name>", "cmnp/<ns>/<name>", "ccmnp/<name>").
	Problems map[string][]policy.Problem `json:"problems"`
}

// EndpointPolicyEntry is the policy of one endpoint of this node.
type EndpointPolicyEntry struct {
	Endpoint       string      `json:"endpoint"`
	DatapathID     uint16      `json:"datapathID"`
	Identity       uint32      `json:"identity"`
	EnforceIngress bool        `json:"enforceIngress"`
	EnforceEgress  bool        `json:"enforceEgress"`
	Rules          []RuleEntry `json:"rules"`
}

// RuleEntry is one rule of an endpoint: peer identity 0 is any peer,
// protocol 0 any protocol, port 0 any port.
type RuleEntry struct {
	Direction string `json:"direction"` // ingress or egress
	Identity  uint32 `json:"identity"`
	Protocol  uint8  `json:"protocol"`
	Port      uint16 `json:"port"`
	EndPort   uint16 `json:"endPort,omitempty"`
	Verdict   string `json:"verdict"` // allow or deny
}

// Policies is what GET /v1/policies answers.
func (a *API) Policies() PoliciesResponse {
	out := PoliciesResponse{Endpoints: []EndpointPolicyEntry{}, Problems: map[string][]policy.Problem{}}
	for _, r := range a.cfg.State.Snapshot().EndpointPolicies() {
		e := EndpointPolicyEntry{Endpoint: r.Key, DatapathID: r.DatapathID, Identity: uint32(r.Policy.Identity),
			EnforceIngress: r.Policy.EnforceIngress, EnforceEgress: r.Policy.EnforceEgress, Rules: []RuleEntry{}}
		for _, ru := range r.Policy.Rules {
			re := RuleEntry{Direction: "egress", Identity: uint32(ru.Identity), Protocol: ru.Proto, Port: ru.Port, EndPort: ru.EndPort, Verdict: "allow"}
			if ru.Ingress {
				re.Direction = "ingress"
			}
			if ru.Deny {
				re.Verdict = "deny"
			}
			e.Rules = append(e.Rules, re)
		}
		out.Endpoints = append(out.Endpoints, e)
	}
	if a.cfg.PolicyProblems == nil { // an API without a policy controller
		return out
	}
	for k, ps := range a.cfg.PolicyProblems() {
		out.Problems[string(k)] = ps
	}
	return out
}
