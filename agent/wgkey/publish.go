// Package wgkey publishes this node's WireGuard public key on its Node
// object: the annotation the clustermesh-apiserver exports to peer
// clusters and the other agents of the cluster read to make this node a
// WireGuard peer.
package wgkey

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/internal/k8sconv"
)

// NodePatcher patches Node objects: client-go's
// CoreV1().Nodes() (typedcorev1.NodeInterface) is one.
type NodePatcher interface {
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Node, error)
}

// Publish writes key, this node's WireGuard public key, on Node node (the
// annotation k8sconv.WireguardPubKeyAnnotation), retrying with backoff
// until the Node accepts it; then it waits for ctx to end and returns its
// error. log may be nil.
func Publish(ctx context.Context, nodes NodePatcher, node, key string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{k8sconv.WireguardPubKeyAnnotation: key}}})
	if err != nil {
		return fmt.Errorf("encode the Node patch: %w", err)
	}
	bo := backoff.Backoff{}
	for {
		_, err := nodes.Patch(ctx, node, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		if err == nil {
			log.Info("published the WireGuard public key on the Node", "annotation", k8sconv.WireguardPubKeyAnnotation, "key", key)
			<-ctx.Done()
			return ctx.Err()
		}
		log.Warn("cannot publish the WireGuard public key on the Node yet, retrying", "node", node, "error", err)
		if werr := bo.Wait(ctx); werr != nil {
			return werr
		}
	}
}
