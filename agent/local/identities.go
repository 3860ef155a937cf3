package local

import (
	"context"
	"fmt"

	"github.com/clustermesh/clustermesh/agent/state"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity"
)

// reconcileIdentity writes the identity resource name into the identities
// table, and queues the pods whose identity it may change.
func (w *Watcher) reconcileIdentity(_ context.Context, name string) error {
	id, err := identity.ParseNumericIdentity(name)
	if err != nil {
		w.log.Warn("ignoring an identity resource whose name is not a numeric identity", "name", name, "error", err)
		return nil
	}
	obj, exists, err := w.identities.GetIndexer().GetByKey(name)
	if err != nil {
		return fmt.Errorf("get identity %s: %w", name, err)
	}
	var lkey string
	var labels identity.Labels
	if exists {
		in, _ := obj.(*cmv1.Identity)
		if in != nil {
			labels, err = identity.ParseLabels(in.SecurityLabels...)
		}
		if in == nil || err != nil {
			w.log.Warn("ignoring an identity resource with invalid labels", "name", name, "error", err)
			exists = false
		} else {
			lkey = labels.SortedKVStoreString()
		}
	}
	err = w.cfg.State.Update(func(t *state.WriteTxn) error {
		if exists {
			return t.UpsertIdentity(w.cfg.Cluster, id, labels)
		}
		return t.DeleteIdentity(w.cfg.Cluster, id)
	})
	if err != nil {
		return fmt.Errorf("write identity %s: %w", name, err)
	}
	w.identityChanged(name, lkey)
	return nil
}

// identityChanged queues the pods of the identity's labels, before and
// after the change (a deleted identity, or a lower duplicate, changes which
// number those pods get).
func (w *Watcher) identityChanged(name, lkey string) {
	w.mu.Lock()
	var keys []string
	for _, lk := range []string{w.idLabels[name], lkey} {
		for pod := range w.byLabels[lk] {
			keys = append(keys, pod)
		}
	}
	if lkey == "" {
		delete(w.idLabels, name)
	} else {
		w.idLabels[name] = lkey
	}
	w.mu.Unlock()
	for _, k := range keys {
		w.podCtl.Enqueue(k)
	}
}

// lookupIdentity returns the identity of a label set, or init.
func (w *Watcher) lookupIdentity(lkey string) identity.NumericIdentity {
	if id, ok := cmv1.LookupByLabels(w.identities.GetIndexer(), lkey); ok {
		return id
	}
	return identity.ReservedInit
}
