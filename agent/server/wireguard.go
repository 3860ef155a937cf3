package server

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/internal/k8sconv"
)

// withPeers is a datapath whose routing peers are the WireGuard device's.
type withPeers struct {
	datapath.Datapath
	peers datapath.Table[string, datapath.Peer]
}

func (w withPeers) Peers() datapath.Table[string, datapath.Peer] { return w.peers }

// publishWireGuardKey writes this node's WireGuard public key on its Node
// (the annotation the clustermesh-apiserver exports to peers and the other
// agents of the cluster read), retrying until the Node accepts it.
func (a *Agent) publishWireGuardKey(ctx context.Context) error {
	pub := a.wireguard.PublicKey()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{k8sconv.WireguardPubKeyAnnotation: pub}}})
	if err != nil {
		return fmt.Errorf("encode the Node patch: %w", err)
	}
	bo := backoff.Backoff{}
	for {
		_, err := a.kube.CoreV1().Nodes().Patch(ctx, a.cfg.NodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		if err == nil {
			a.log.Info("published the WireGuard public key on the Node", "annotation", k8sconv.WireguardPubKeyAnnotation, "key", pub)
			<-ctx.Done()
			return ctx.Err()
		}
		a.log.Warn("cannot publish the WireGuard public key on the Node yet, retrying", "node", a.cfg.NodeName, "error", err)
		if werr := bo.Wait(ctx); werr != nil {
			return werr
		}
	}
}
