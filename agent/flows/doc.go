// Package flows turns the eBPF datapath's events into flows (agent/flowapi)
// and keeps the most recent ones, so that a user sees every connection and
// every drop of the node with both ends resolved to pods, identities and
// clusters (GET /v1/flows, GET /v1/drops, `clustermesh observe`).
//
// Rules:
//   - A Ring is bounded: it holds at most its capacity of flows, the newest
//     ones, and counts those it overwrote. It never grows, and its writer
//     never blocks on a reader: readers follow it by sequence number and
//     learn how many flows they missed.
//   - A Recorder has one reader of the datapath's events, its Run; the
//     caller owns that goroutine and the Source, which it closes only after
//     Run returned (the datapath after the Source). The Resolver is used
//     on Run's goroutine only.
//   - Both ends are resolved when the flow is recorded, from the state as
//     it is then (a pod deleted later keeps its name in its flows), through
//     a cache valid for one snapshot of the state: cheap, never blocking.
//     So is the Service of a flow socket load balancing translated (the
//     datapath reports the frontend, bpf.Event.Frontend): the local
//     Service with that frontend; its translation is cached and shared
//     between flows, never modified once recorded.
//   - No event is lost silently: an event that does not decode
//     (bpf.ErrInvalidEvent) is skipped and counted, the datapath's own
//     losses (ring buffer full) are read from it, and the ring counts what
//     it overwrote. Any other read error stops Run.
//   - Sampling happens in the datapath (bpf.Options.TraceSample), for
//     forwarded flows only: drops are never sampled.
package flows
