package allocator

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
)

var everything = labels.Everything()

// gcLoop deletes identities unused (or duplicated) for longer than the
// grace period, starting only after the initial pods were processed.
func (a *Allocator) gcLoop(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-a.Synced():
	}
	interval := max(a.cfg.GCGrace/4, 100*time.Millisecond)
	for {
		a.collect(ctx)
		t := a.cfg.Clock.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// collect runs one garbage-collection pass.
func (a *Allocator) collect(ctx context.Context) {
	now := a.cfg.Clock.Now()
	for _, obj := range a.identities.GetIndexer().List() {
		in, ok := obj.(*cmv1.Identity)
		if !ok || in.Labels[cmv1.ClusterLabel] != a.cfg.Cluster {
			continue
		}
		id, err := in.NumericID()
		if err != nil || !a.cfg.Layout.Owns(a.cfg.ClusterID, id) {
			continue // not ours to collect
		}
		lkey, err := in.LabelsKey()
		used := false
		if err == nil {
			a.mu.Lock()
			used = a.users[lkey] > 0
			a.mu.Unlock()
			if winner, ok := cmv1.LookupByLabels(a.identities.GetIndexer(), lkey); ok && winner != id {
				used = false // a duplicate: readers use the winner
			}
		}
		a.mu.Lock()
		if used {
			delete(a.unusedSince, in.Name)
			a.mu.Unlock()
			continue
		}
		since, seen := a.unusedSince[in.Name]
		if !seen {
			a.unusedSince[in.Name] = now
		}
		a.mu.Unlock()
		if !seen || now.Sub(since) < a.cfg.GCGrace {
			continue
		}
		if err := cmv1.DeleteIdentity(ctx, a.rc, id); err != nil && !apierrors.IsNotFound(err) {
			a.cfg.Log.Warn("delete unused identity", "id", id, "error", err)
			continue
		}
		a.mu.Lock()
		delete(a.unusedSince, in.Name)
		if a.created[lkey].id == id {
			delete(a.created, lkey)
		}
		a.mu.Unlock()
		a.cfg.Log.Info("deleted unused identity", "id", id, "labels", lkey)
	}
}
