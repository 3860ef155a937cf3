// Package drops keeps the most recent packets the eBPF datapath dropped, so
// that a user can see a dropped connection with both identities and the
// reason (the agent serves them as GET /v1/drops).
//
// Rules:
//   - A Ring is bounded: it holds at most its capacity of records, the
//     newest ones, and counts those it overwrote. It never grows and never
//     blocks its writer on a reader.
//   - A Recorder has one reader of the datapath's events, its Run; the
//     caller owns that goroutine and the Source, which it closes only after
//     Run returned (the datapath after the Source).
//   - Only drops are kept: allowed (forwarded) events are read and ignored,
//     so that the datapath's ring buffer does not fill up with them.
//   - A record that does not decode (bpf.ErrInvalidEvent) is skipped and
//     counted; it never stops Run. Any other read error does.
package drops
