package desired

import (
	"cmp"
	"slices"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
)

// Policies is every local endpoint's policy by datapath ID.
func Policies(sn *state.Snapshot) map[uint16]datapath.EndpointPolicy {
	rows := sn.EndpointPolicies()
	out := make(map[uint16]datapath.EndpointPolicy, len(rows))
	for _, r := range rows {
		out[r.DatapathID] = r.Policy
	}
	return out
}

// AttachmentConflict is a host interface that more than one attachment row
// claims (a stale row: its pod's DEL never came, and the index was reused).
type AttachmentConflict struct {
	HostIfIndex int
	// Chosen is the key of the row whose pod's policy the interface gets,
	// Ignored the keys of the others, sorted.
	Chosen  string
	Ignored []string
}

// Attachments is every CNI attachment of a pod whose policy is computed
// (so whose datapath ID is known), by host interface index. Rows carry no
// creation order, so when several such rows claim one interface the row
// whose key sorts last has it (not necessarily the newer one): the choice
// is deterministic, and the interface is enforced with one pod's policy
// rather than left open. conflicts lists those interfaces, sorted by
// index, to be reported.
func Attachments(sn *state.Snapshot) (out map[int]datapath.Attachment, conflicts []AttachmentConflict) {
	ids := map[string]uint16{}
	for _, r := range sn.EndpointPolicies() {
		ids[r.Key] = r.DatapathID
	}
	out = map[int]datapath.Attachment{}
	chosen := map[int]string{}
	ignored := map[int][]string{}
	for _, at := range sn.Attachments() { // sorted by key: the last one wins
		id, ok := ids[at.Namespace+"/"+at.Pod]
		if !ok {
			continue
		}
		if prev, ok := chosen[at.HostIfIndex]; ok {
			ignored[at.HostIfIndex] = append(ignored[at.HostIfIndex], prev)
		}
		chosen[at.HostIfIndex] = at.Key
		out[at.HostIfIndex] = datapath.Attachment{IfName: at.HostIfName, EndpointID: id}
	}
	for idx, keys := range ignored {
		conflicts = append(conflicts, AttachmentConflict{HostIfIndex: idx, Chosen: chosen[idx], Ignored: keys})
	}
	slices.SortFunc(conflicts, func(a, b AttachmentConflict) int { return cmp.Compare(a.HostIfIndex, b.HostIfIndex) })
	return out, conflicts
}
