// Package inventory answers `clustermesh identity list`, `endpoint list`
// and `service list` from the agents of a cluster (GET /v1/identities,
// /v1/endpoints with /v1/policies, and /v1/services/detail of their local
// API).
//
// Rules: every figure is an agent's; nothing is recomputed here. Per-node
// answers (endpoints) are merged across every agent; cluster-wide answers
// (identities, services) are taken from every agent and de-duplicated, so
// that one agent down loses nothing; agents that could not be asked are
// listed in Notes, never silently left out.
package inventory
