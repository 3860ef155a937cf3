// Package observe is `clustermesh observe`: the flows of every agent of a
// cluster (GET /v1/flows of each agent's local API, see docs/agent-api.md),
// merged in time order, filtered on the agents, printed compact, as JSON or
// as a table.
//
// Agents are reached through a Source, as `clustermesh status` reaches them:
// SocketSource over agent unix sockets (tests, a shell on a node),
// ProxySource through the Kubernetes API's pod proxy to each agent pod's
// status sidecar, which relays GET /v1/flows from the agent's socket.
//
// Rules: filtering happens on the agents (flowapi.Filter), never twice;
// merging keeps time order across agents (a held history is merged whole,
// a stream through a short reordering window); a lost event or an agent
// that cannot be read is said on the error stream, never hidden; Run owns
// the goroutines reading the agents and returns after they stopped.
// Output is buffered, and flushed whenever no more flows are at hand (and
// before a line on the error stream): a flow waits for no other than the
// merge window requires. Lines are decoded with flowapi.Decoder, which
// decodes exactly as encoding/json does.
package observe
