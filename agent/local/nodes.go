package local

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/internal/k8sconv"
)

// reconcileNode writes a node of the local cluster into the nodes table,
// in the form peers read it from etcd.
func (w *Watcher) reconcileNode(_ context.Context, name string) error {
	node, err := w.factory.Core().V1().Nodes().Lister().Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get node %s: %w", name, err)
	}
	err = w.cfg.State.Update(func(t *state.WriteTxn) error {
		if node == nil {
			return t.DeleteNode(w.cfg.Cluster, name)
		}
		n, problems := k8sconv.NodeToSchema(w.cfg.Cluster, w.cfg.ClusterID, node)
		for _, p := range problems {
			w.log.Debug("node field left out", "node", name, "problem", p)
		}
		return t.UpsertNode(w.cfg.Cluster, n)
	})
	if err != nil {
		return fmt.Errorf("write node %s: %w", name, err)
	}
	return nil
}
