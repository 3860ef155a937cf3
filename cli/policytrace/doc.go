// Package policytrace answers `clustermesh policy trace` and `clustermesh
// policy get` from the agents' own policy engines (GET /v1/policy/trace and
// /v1/policy/endpoints of their local API): the verdict the destination's
// agent gives on ingress and the source's agent on egress, with the
// policies and rules responsible, and the policies that select an
// endpoint.
//
// Rules: no verdict is computed here; every verdict and reason is an
// agent's. A side that no agent asked could evaluate is reported as not
// evaluated, never guessed; the overall verdict is "denied" as soon as an
// evaluated side denies, "allowed" only when both sides were evaluated
// and allow.
package policytrace
