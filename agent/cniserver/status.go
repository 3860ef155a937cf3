package cniserver

import (
	"context"
	"fmt"
	"reflect"

	"github.com/clustermesh/clustermesh/agent/cniapi"
	"github.com/clustermesh/clustermesh/agent/state"
)

// attachmentStatus reports whether the datapath holds at with the pod's
// policy, and if not, what is missing: from the state and the per-object
// status of the policies and attachments reconcilers (no kernel read).
func (s *Server) attachmentStatus(at state.AttachmentRow) (cniapi.Status, error) {
	st := cniapi.Status{ContainerID: at.ContainerID, IfName: at.IfName, HostIfName: at.HostIfName, HostIfIndex: at.HostIfIndex}
	pod := at.Namespace + "/" + at.Pod
	sn := s.cfg.State.Snapshot()
	row, ok := sn.EndpointPolicy(pod)
	if !ok {
		if _, ok := sn.Endpoint(at.Namespace, at.Pod); !ok {
			return st, fmt.Errorf("pod %s is not known on node %s (no such Pod bound to this node in the Kubernetes API yet)", pod, s.cfg.Node)
		}
		return st, fmt.Errorf("the policy of pod %s is not computed yet", pod)
	}
	st.DatapathID, st.Identity = row.DatapathID, uint32(row.Policy.Identity)
	if p := s.cfg.Policies.Object(row.DatapathID); !p.Held || !reflect.DeepEqual(p.Applied, row.Policy) {
		return st, fmt.Errorf("the policy of pod %s is not in the datapath yet%s", pod, errSuffix(p.Err))
	}
	h := s.cfg.Attachments.Object(at.HostIfIndex)
	if !h.Held {
		return st, fmt.Errorf("interface %s of pod %s is not attached yet%s", at.HostIfName, pod, errSuffix(h.Err))
	}
	if h.Applied.EndpointID != row.DatapathID {
		return st, fmt.Errorf("interface %s (index %d) of pod %s enforces the policy of endpoint %d, not the pod's (%d), yet: "+
			"if another attachment claims the interface, it is stale (see the agent's log)%s",
			at.HostIfName, at.HostIfIndex, pod, h.Applied.EndpointID, row.DatapathID, errSuffix(h.Err))
	}
	st.Attached = true
	return st, nil
}

func errSuffix(err string) string {
	if err == "" {
		return ""
	}
	return ": " + err
}

// waitAttached waits until the attachment is in place or ctx ends (then
// the error says what is missing). It wakes when the tables it reads
// change or either reconciler ends a pass, not by polling.
func (s *Server) waitAttached(ctx context.Context, at state.AttachmentRow) (cniapi.Status, error) {
	tables := s.cfg.State.WatchTables(state.TablePolicies, state.TableEndpoints, state.TableAttachments)
	for {
		// Take the channels before reading the status, so that no change
		// between the two is missed.
		changed, policies, attachments := tables.Changed(ctx), s.cfg.Policies.Watch(), s.cfg.Attachments.Watch()
		st, err := s.attachmentStatus(at)
		if err == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("attach %s: %w", at.Key, err)
		case <-changed:
		case <-policies:
		case <-attachments:
		}
	}
}
