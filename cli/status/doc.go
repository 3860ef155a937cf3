// Package status answers "does the mesh work?" for one cluster: whether its
// clustermesh-apiserver is ready and exports everything, which peers its
// mesh Secret configures, and, from every agent's own status (GET
// /v1/status of the agent's local API), on how many nodes each peer is
// connected and synced, with the errors the agents report and a hint for
// each.
//
// Agent statuses come through a Source: SocketSource queries agent unix
// sockets directly (tests, or a shell on a node); ExecSource runs
// `clustermesh agent-status` inside each agent pod through the Kubernetes
// API (pods/exec), as kubectl exec does.
//
// Rules: the report is a pure function of what was collected (Build), so
// its JSON is stable; collecting never writes anything.
package status
