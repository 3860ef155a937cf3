// Package agents asks the agents of a cluster GET requests of their local
// API (docs/agent-api.md) for the CLI's read commands (policy trace,
// policy get, identity, service and endpoint list): through the
// Kubernetes pod proxy to each agent pod's status sidecar (which relays a
// fixed list of read-only routes from the agent's socket), or directly over
// unix sockets on a node and in tests.
//
// Rules: only GET; every answer is bounded in size and time; an agent that
// cannot be asked is an Agent with Err set, never a reason to stop asking
// the others.
package agents
