// Package flowapi is the wire form of the agent's flows (GET /v1/flows, see
// docs/agent-api.md): the Flow, its two Endpoints and its Service
// translation (socket load balancing's frontend and backend), the Status
// line of a flow stream, the Request (last N, since, follow) and the
// Filter, with their query-parameter form. The agent (agent/flows, agent/localapi) and
// the CLI (cli/observe) share it.
//
// Rules:
//   - The JSON field names are stable: they are the documented API. Add
//     fields; never rename or remove one.
//   - The package is small and dependency-free (the standard library and
//     the identity value types), so that the CLI does not pull in the
//     agent.
//   - Parsers never panic; every error is a *ParamError naming the
//     parameter and the value, so that the agent answers "from-pod=..." and
//     the CLI "--from-pod ...".
//   - A Flow's slices (Endpoint.Labels) and its Service may be shared
//     between flows: readers must not modify them.
//   - Decoder decodes a line exactly as encoding/json does (its own path
//     only for the spelling Flow.AppendJSON writes, encoding/json for any
//     other), and keeps a bounded memory of the strings it shares.
package flowapi
