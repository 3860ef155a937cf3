package mesh

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/clustermesh/clustermesh/kvstore"
)

// Disconnect removes, for every pair and both ways, the peer's entries from
// each cluster's mesh Secret (the agents then disconnect and drain the
// peer) and then the per-peer etcd users. It is idempotent. It does not
// roll back: a disconnect that fails halfway is finished by running it
// again.
func Disconnect(ctx context.Context, pairs []Pair) (Result, error) {
	clusters := clustersOf(pairs)
	for i, a := range clusters {
		for _, b := range clusters[i+1:] {
			if a.Cluster.Context == b.Cluster.Context {
				return Result{}, fmt.Errorf("%s is given twice: name two different kubeconfig contexts", a.Cluster)
			}
		}
	}
	r, err := newRun(ctx, clusters)
	if err != nil {
		return Result{}, err
	}
	defer r.close()
	for _, s := range clusters {
		sec, err := s.PeersSecret(ctx)
		if err != nil {
			return r.res, err
		}
		data := maps.Clone(sec.Data)
		for _, l := range links(pairs) {
			if l.to == s {
				for _, k := range PeerKeys(l.from.Name) {
					delete(data, k)
				}
			}
		}
		if err := r.writeSecret(ctx, s, sec, data); err != nil {
			return r.res, fmt.Errorf("%w: run the same disconnect again to finish", err)
		}
	}
	for _, l := range links(pairs) {
		cli := r.admins[l.from].Etcd()
		user := PeerUser(l.to.Name)
		if _, err := cli.UserGet(ctx, user); errors.Is(err, rpctypes.ErrUserNotFound) {
			continue
		}
		if err := kvstore.RemovePeerUser(ctx, cli, l.to.Name); err != nil {
			return r.res, fmt.Errorf("cluster %s (%s): %w: run the same disconnect again to finish", l.from.Name, l.from.Cluster, err)
		}
		r.change(l.from, "deleted etcd user %s", user)
	}
	return r.res, nil
}
