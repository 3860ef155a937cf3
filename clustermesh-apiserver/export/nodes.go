package export

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/clustermesh/clustermesh/internal/k8sconv"
)

func (e *Exporter) reconcileNode(_ context.Context, name string) error {
	key := e.cfg.Paths.Node(e.cfg.Cluster, name)
	node, err := e.factory.Core().V1().Nodes().Lister().Get(name)
	if apierrors.IsNotFound(err) {
		e.nodes.store.Delete(key)
		e.clearReport("node", name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get node %s: %w", name, err)
	}
	n, problems := k8sconv.NodeToSchema(e.cfg.Cluster, uint32(e.cfg.ClusterID), node)
	for _, p := range problems {
		e.report(node, name, "node", "InvalidNode", p)
	}
	if len(problems) == 0 {
		e.clearReport("node", name)
	}
	b, err := n.Marshal()
	if err != nil {
		return fmt.Errorf("encode node %s: %w", name, err)
	}
	return e.nodes.store.Upsert(key, b)
}
