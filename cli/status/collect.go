package status

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/internal/version"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Source collects the status of every agent of a cluster.
type Source interface {
	Collect(ctx context.Context) ([]NodeStatus, error)
}

// Inputs is everything a Report is built from.
type Inputs struct {
	Cluster    string
	ClusterID  uint32
	APIServer  APIServer
	Problems   []Problem
	Configured []string
	Nodes      []NodeStatus
	// CLIVersion is the version of the CLI asking (version.Get).
	CLIVersion string
}

// etcdTimeout bounds the probe of the cluster's etcd.
const etcdTimeout = 10 * time.Second

// Collect reads the cluster's apiserver state, its mesh Secret and every
// agent's status.
func Collect(ctx context.Context, s *mesh.Settings, src Source) (Inputs, error) {
	in := Inputs{Cluster: s.Name, ClusterID: s.ID, APIServer: APIServer{Exported: map[string]bool{}}, CLIVersion: version.Get().Version}
	ns := s.Cluster.Namespace
	dep, err := s.Cluster.Kube.AppsV1().Deployments(ns).Get(ctx, mesh.APIServerName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		in.Problems = append(in.Problems, Problem{Message: fmt.Sprintf("Deployment %s/%s not found", ns, mesh.APIServerName),
			Hint: "install it with `clustermesh install`"})
	case err != nil:
		return in, fmt.Errorf("read Deployment %s/%s in %s: %w", ns, mesh.APIServerName, s.Cluster, err)
	default:
		in.APIServer.Replicas, in.APIServer.ReadyReplicas = dep.Status.Replicas, dep.Status.ReadyReplicas
		if dep.Status.ReadyReplicas == 0 {
			in.Problems = append(in.Problems, Problem{Message: fmt.Sprintf("Deployment %s/%s has no ready replica", ns, mesh.APIServerName),
				Hint: fmt.Sprintf("kubectl -n %s describe deployment %s; kubectl -n %s logs deployment/%s", ns, mesh.APIServerName, ns, mesh.APIServerName)})
		}
	}
	in.Problems = append(in.Problems, probeEtcd(ctx, s, &in.APIServer)...)
	in.APIServer.Ready = in.APIServer.ReadyReplicas > 0 && in.APIServer.EtcdReachable && in.APIServer.ClusterConfig
	for _, k := range Kinds {
		in.APIServer.Ready = in.APIServer.Ready && in.APIServer.Exported[k]
	}

	sec, err := s.PeersSecret(ctx)
	if err != nil {
		return in, err
	}
	in.Configured = mesh.ConfiguredPeers(sec)
	if in.Nodes, err = src.Collect(ctx); err != nil {
		return in, fmt.Errorf("collect agent statuses in %s: %w", s.Cluster, err)
	}
	return in, nil
}

func probeEtcd(ctx context.Context, s *mesh.Settings, a *APIServer) []Problem {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	cli, err := s.ConnectAdmin(ctx)
	if err != nil {
		return []Problem{{Message: err.Error(), Hint: "peers reach the etcd at the same endpoints: fix etcd-endpoints in ConfigMap " +
			s.Cluster.Namespace + "/" + mesh.ConfigMapName + " or the clustermesh-apiserver Service"}}
	}
	defer cli.Close()
	a.EtcdReachable = true
	var out []Problem
	cc, err := kvstore.GetClusterConfig(ctx, cli, s.Paths, s.Name)
	switch {
	case err != nil:
		out = append(out, Problem{Message: fmt.Sprintf("cluster config of %s: %v", s.Name, err),
			Hint: "the clustermesh-apiserver writes it at start: check its logs and that its --cluster-name matches the ConfigMap"})
	case cc.ID != s.ID:
		out = append(out, Problem{Message: fmt.Sprintf("the etcd announces cluster ID %d, the ConfigMap says %d", cc.ID, s.ID),
			Hint: "the clustermesh-apiserver runs with another --cluster-id: reinstall with the ConfigMap's cluster-id"})
	default:
		a.ClusterConfig = true
	}
	p := s.Paths
	for kind, prefix := range map[string]string{"nodes": p.NodesPrefix(), "identities": p.IdentitiesPrefix(),
		"ip": p.IPPrefix(), "services": p.ServicesPrefix()} {
		resp, err := cli.Etcd().Get(ctx, p.Synced(s.Name, prefix))
		a.Exported[kind] = err == nil && len(resp.Kvs) > 0
	}
	cache, err := probeCache(ctx, cli, s)
	if err != nil {
		out = append(out, Problem{Message: err.Error(), Hint: "the cache of remote state could not be read from the etcd; run status again"})
	}
	a.Cache = cache
	var missing []string
	for _, k := range Kinds {
		if !a.Exported[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		out = append(out, Problem{Message: fmt.Sprintf("the clustermesh-apiserver has not finished exporting %v", missing),
			Hint: "peers wait for these before trusting the cluster; check the clustermesh-apiserver's logs"})
	}
	return out
}

// probeCache lists the peers the cache of remote state publishes in the
// cluster's etcd (cluster configs with the "cached" capability), with
// their synced markers and the number of cached keys per kind.
func probeCache(ctx context.Context, cli *kvstore.Client, s *mesh.Settings) ([]CachedPeer, error) {
	p := s.Paths
	resp, err := cli.Etcd().Get(ctx, p.ClusterConfigPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list the cluster configs under %s: %w", p.ClusterConfigPrefix(), err)
	}
	var out []CachedPeer
	var bad []error
	for _, kv := range resp.Kvs {
		name, err := p.ParseClusterConfigKey(string(kv.Key))
		if err != nil || name == s.Name {
			continue
		}
		cc, err := p.DecodeClusterConfig(string(kv.Key), kv.Value)
		if err != nil || !cc.Capabilities.Cached {
			continue
		}
		cp := p.Cache(name)
		c := CachedPeer{Name: name, ClusterID: cc.ID, Synced: map[string]bool{}, Entries: map[string]int64{}}
		for kind, pre := range map[string][2]string{
			"nodes":      {cp.NodesPrefix(), cp.ClusterNodesPrefix(name)},
			"identities": {cp.IdentitiesPrefix(), cp.IdentityIDPrefix()},
			"ip":         {cp.IPPrefix(), cp.IPDefaultPrefix()},
			"services":   {cp.ServicesPrefix(), cp.ClusterServicesPrefix(name)},
		} {
			m, err := cli.Etcd().Get(ctx, cp.Synced(name, pre[0]), clientv3.WithCountOnly())
			if err != nil {
				return out, fmt.Errorf("read the cache's synced marker of %s: %w", name, err)
			}
			c.Synced[kind] = m.Count > 0
			n, err := cli.Etcd().Get(ctx, pre[1], clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return out, fmt.Errorf("count the cached %s of %s: %w", kind, name, err)
			}
			c.Entries[kind] = n.Count
		}
		st, err := cli.Etcd().Get(ctx, p.CacheStatus(name))
		if err != nil {
			return out, fmt.Errorf("read the cache's connection state of %s: %w", name, err)
		}
		if len(st.Kvs) > 0 {
			// A value that does not decode loses only itself: the peer
			// is listed without its connection, and the error names the key.
			if conn, err := schema.DecodeCachePeerState(p.CacheStatus(name), st.Kvs[0].Value); err != nil {
				bad = append(bad, err)
			} else {
				c.Connection = &conn
			}
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b CachedPeer) int { return strings.Compare(a.Name, b.Name) })
	return out, errors.Join(bad...)
}
