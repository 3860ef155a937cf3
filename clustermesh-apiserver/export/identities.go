package export

import (
	"context"
	"fmt"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity"
)

func (e *Exporter) reconcileIdentity(_ context.Context, name string) error {
	id, err := identity.ParseNumericIdentity(name)
	if err != nil {
		e.report(nil, name, "identity", "InvalidIdentity", fmt.Sprintf("identity %q: name is not a numeric identity; delete it", name))
		return nil
	}
	key := e.cfg.Paths.Identity(uint32(id))
	obj, exists, err := e.identities.GetIndexer().GetByKey(name)
	if err != nil {
		return fmt.Errorf("get identity %s: %w", name, err)
	}
	if !exists {
		e.ids.store.Delete(key)
		e.clearReport("identity", name)
		return nil
	}
	in := obj.(*cmv1.Identity)
	lkey, problem := e.validateIdentity(id, in)
	if problem != "" {
		e.report(in, name, "identity", "InvalidIdentity", problem)
		e.ids.store.Delete(key)
		return nil
	}
	e.clearReport("identity", name)
	return e.ids.store.Upsert(key, []byte(lkey))
}

// validateIdentity checks that an identity is the cluster's own: in its
// range and labelled with its cluster.
func (e *Exporter) validateIdentity(id identity.NumericIdentity, in *cmv1.Identity) (string, string) {
	if !e.cfg.Layout.Owns(e.cfg.ClusterID, id) || identity.IsReserved(id) {
		first, last := e.cfg.Layout.Range(e.cfg.ClusterID)
		return "", fmt.Sprintf("identity %d is outside cluster %s's range %d-%d; delete it", id, e.cfg.Cluster, first, last)
	}
	ls, err := identity.ParseLabels(in.SecurityLabels...)
	if err != nil {
		return "", fmt.Sprintf("identity %d: %v; delete it, the allocator creates a valid one", id, err)
	}
	if l, ok := ls.Get(identity.SourceK8s + ":" + identity.ClusterLabelKey); !ok || l.Value != e.cfg.Cluster {
		return "", fmt.Sprintf("identity %d lacks the label %s=%s; delete it", id, identity.ClusterLabelKey, e.cfg.Cluster)
	}
	return ls.SortedKVStoreString(), ""
}
