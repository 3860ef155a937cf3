package desired

import (
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

// Attachments is every CNI attachment of a pod whose policy is computed
// (so whose datapath ID is known).
func Attachments(sn *state.Snapshot) map[string]datapath.Attachment {
	ids := map[string]uint16{}
	for _, r := range sn.EndpointPolicies() {
		ids[r.Key] = r.DatapathID
	}
	out := map[string]datapath.Attachment{}
	for _, at := range sn.Attachments() {
		if id, ok := ids[at.Namespace+"/"+at.Pod]; ok {
			out[at.Key] = datapath.Attachment{IfName: at.HostIfName, IfIndex: at.HostIfIndex, EndpointID: id}
		}
	}
	return out
}
