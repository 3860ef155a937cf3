package server

import (
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/desired"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
)

// newReconcilers builds the reconcilers of every datapath table, each
// reading its desired state (agent/desired) from the state, into
// a.reconcilers. It returns the policies and attachments reconcilers,
// which keep each object's status: the CNI ADD waits on them.
func (a *Agent) newReconcilers() (
	policies *reconciler.Reconciler[uint16, datapath.EndpointPolicy],
	attachments *reconciler.Reconciler[int, datapath.Attachment],
) {
	st, cluster, node, log := a.State, a.cfg.ClusterName, a.cfg.NodeName, a.log
	policies = reconciler.New(reconciler.Config[uint16, datapath.EndpointPolicy]{
		Name: "policies", Table: a.Datapath.Policies(), Initialized: a.ready, Log: log, TrackObjects: true,
		Changed: st.WatchTables(state.TablePolicies, state.TableInitialized).Changed,
		Desired: func() map[uint16]datapath.EndpointPolicy { return desired.Policies(st.Snapshot()) },
	})
	attachments = reconciler.New(reconciler.Config[int, datapath.Attachment]{
		Name: "attachments", Table: a.Datapath.Attachments(), Initialized: a.ready, Log: log, TrackObjects: true,
		Changed: st.WatchTables(state.TableAttachments, state.TablePolicies, state.TableInitialized).Changed,
		Desired: newAttachmentsDesired(st, log),
	})
	a.reconcilers = []statusRunner{
		policies,
		attachments,
		reconciler.New(reconciler.Config[netip.Prefix, datapath.IPCacheEntry]{
			Name: "ipcache", Table: a.Datapath.IPCache(), Initialized: a.ready, Log: log, Capacity: a.ipcacheCapacity(),
			Incremental: desired.NewIPCacheSource(st, cluster, node),
		}),
		reconciler.New(reconciler.Config[string, datapath.Peer]{
			Name: "peers", Table: a.Datapath.Peers(), Initialized: a.ready, Log: log,
			Incremental: desired.NewPeersSource(st, cluster, node),
		}),
		reconciler.New(reconciler.Config[netip.Prefix, identity.NumericIdentity]{
			Name: "cidr-identities", Table: a.Datapath.CIDRIdentities(), Initialized: a.ready, Log: log,
			Incremental: desired.NewCIDRIdentitiesSource(st),
		}),
		reconciler.New(reconciler.Config[datapath.ServiceKey, datapath.Service]{
			Name: "services", Table: a.Datapath.Services(), Initialized: a.ready, Log: log,
			Incremental: desired.NewServicesSource(st, cluster),
		}),
	}
	return policies, attachments
}

// ipcacheCapacity is the size of the kernel's ipcache (0: unbounded, the
// in-memory datapath).
func (a *Agent) ipcacheCapacity() int {
	if a.bpf == nil {
		return 0
	}
	return a.bpf.IPCacheCapacity()
}

// reconcilerStatus returns the status of every reconciler.
func (a *Agent) reconcilerStatus() []reconciler.Status {
	out := make([]reconciler.Status, 0, len(a.reconcilers))
	for _, r := range a.reconcilers {
		out = append(out, r.Status())
	}
	return out
}
