package mesh

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Peers returns the peers recorded in the cluster's mesh Secret (none
// when the Secret does not exist).
func Peers(ctx context.Context, c *Cluster) ([]string, error) {
	sec, err := c.Kube.CoreV1().Secrets(c.Namespace).Get(ctx, PeersSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read Secret %s/%s in %s: %w", c.Namespace, PeersSecretName, c, err)
	}
	return ConfiguredPeers(sec), nil
}

// ForgetPeers empties the cluster's mesh Secret (its agents, or its
// clustermesh-apiserver's cache, then stop reading every peer) and
// returns the peers it held. Only the local side: each peer still reads
// this cluster (RemoteLeftovers says what remains there). Unlike
// Disconnect it needs no other cluster, nor this cluster's etcd: the
// per-peer users of this cluster's etcd go with its clustermesh-apiserver.
func ForgetPeers(ctx context.Context, c *Cluster) ([]string, error) {
	api := c.Kube.CoreV1().Secrets(c.Namespace)
	sec, err := api.Get(ctx, PeersSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read Secret %s/%s in %s: %w", c.Namespace, PeersSecretName, c, err)
	}
	peers := ConfiguredPeers(sec)
	if len(sec.Data) == 0 {
		return peers, nil
	}
	sec.Data = nil
	if _, err := api.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("remove the peers %v from Secret %s/%s in %s: %w", peers, c.Namespace, PeersSecretName, c, err)
	}
	return peers, nil
}

// RemoteLeftovers says what remains in a peer's cluster of its pairing
// with cluster name once name forgot it: the peer's mesh Secret entries
// for name (its agents keep trying to read name's etcd) and the etcd user
// it created for name (harmless: its certificate was in name's mesh
// Secret), with the commands that remove them.
func RemoteLeftovers(name, peer, namespace string) string {
	var ops []string
	for _, k := range PeerKeys(name) {
		ops = append(ops, fmt.Sprintf(`{"op":"remove","path":"/data/%s"}`, k))
	}
	return fmt.Sprintf("cluster %s still reads %s: remove its entries with\n"+
		"    kubectl --context <context of %s> -n %s patch secret %s --type=json -p '[%s]'\n"+
		"  and, if you like, its etcd user %s (unusable: its certificate was in %s's mesh Secret) with etcdctl user delete %s",
		peer, name, peer, namespace, PeersSecretName, strings.Join(ops, ","), PeerUser(name), name, PeerUser(name))
}
