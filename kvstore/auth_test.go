package kvstore_test

import (
	"errors"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

func TestRemoteUsersAreReadOnly(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{Cluster: "cluster1"})
	admin := env.Connect(t, kvstore.AdminUser)
	p := env.Paths
	for _, k := range []string{p.NodesPrefix() + "/cluster1/n1", p.ClusterConfig("cluster1"), p.ClusterConfig("cluster2"),
		p.Heartbeat(), p.Synced("cluster1", p.NodesPrefix()), "cilium/secret"} {
		put(t, admin.Etcd(), k, "v")
	}
	if err := kvstore.AddPeerUser(t.Context(), admin.Etcd(), "cluster2"); err != nil {
		t.Fatal(err)
	}
	if err := kvstore.AddPeerUser(t.Context(), admin.Etcd(), "cluster2"); err != nil {
		t.Fatalf("adding a peer user twice: %v", err)
	}

	for _, user := range []string{kvstore.RemoteUser, kvstore.PeerUser("cluster2")} {
		t.Run(user, func(t *testing.T) {
			cli := env.Connect(t, user).Etcd()
			for _, k := range []string{p.NodesPrefix() + "/cluster1/n1", p.ClusterConfig("cluster1"), p.Heartbeat(), p.Synced("cluster1", p.NodesPrefix())} {
				if _, err := cli.Get(t.Context(), k); err != nil {
					t.Errorf("read %s: %v", k, err)
				}
			}
			// Cilium's etcd client lists the heartbeat as a prefix before
			// it reports itself connected.
			if resp, err := cli.Get(t.Context(), p.Heartbeat(), clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 1 {
				t.Errorf("list the heartbeat prefix %s as Cilium does: %v", p.Heartbeat(), err)
			}
			for _, k := range []string{p.ClusterConfig("cluster2"), "cilium/secret"} {
				if _, err := cli.Get(t.Context(), k); !errors.Is(err, rpctypes.ErrPermissionDenied) {
					t.Errorf("read %s outside the remote role: err = %v, want permission denied", k, err)
				}
			}
			for _, k := range []string{p.NodesPrefix() + "/cluster1/n1", p.NodesPrefix() + "/cluster1/evil", p.Heartbeat()} {
				if _, err := cli.Put(t.Context(), k, "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
					t.Errorf("write %s: err = %v, want permission denied", k, err)
				}
				if _, err := cli.Delete(t.Context(), k); !errors.Is(err, rpctypes.ErrPermissionDenied) {
					t.Errorf("delete %s: err = %v, want permission denied", k, err)
				}
			}
		})
	}

	if err := kvstore.RemovePeerUser(t.Context(), admin.Etcd(), "cluster2"); err != nil {
		t.Fatal(err)
	}
	cli := env.Connect(t, kvstore.PeerUser("cluster2")).Etcd()
	if _, err := cli.Get(t.Context(), p.Heartbeat()); err == nil {
		t.Fatal("a removed peer user can still read")
	}
}

func TestConnectWrongCAIsAClearError(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{Cluster: "cluster1"})
	other := kvtest.Start(t, kvtest.Options{Cluster: "cluster2"})

	// Our client trusts cluster2's CA, but talks to cluster1.
	cfg := env.ClientConfig(t, kvstore.RemoteUser)
	cfg.TrustedCAFile = other.ClientConfig(t, kvstore.RemoteUser).TrustedCAFile
	_, err := kvstore.Connect(t.Context(), cfg)
	if !errors.Is(err, kvstore.ErrTLS) || !strings.Contains(err.Error(), "trusted-ca-file") || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("connect with a wrong CA: err = %v, want ErrTLS naming trusted-ca-file and the unknown authority", err)
	}

	// Our client certificate comes from cluster2's CA.
	cfg = env.ClientConfig(t, kvstore.RemoteUser)
	foreign := other.ClientConfig(t, kvstore.RemoteUser)
	cfg.CertFile, cfg.KeyFile = foreign.CertFile, foreign.KeyFile
	_, err = kvstore.Connect(t.Context(), cfg)
	if !errors.Is(err, kvstore.ErrTLS) || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("connect with a foreign client certificate: err = %v, want ErrTLS about the client certificate", err)
	}
}

func TestConnectUnreachable(t *testing.T) {
	cfg := kvstore.ClientConfig{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: kvstore.Duration(300e6)}
	if _, err := kvstore.Connect(t.Context(), cfg); !errors.Is(err, kvstore.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}

// The local user (the local agents reading the cache of remote state) reads
// the cache, every cluster config, every synced marker and the heartbeat,
// and nothing else; it writes nothing.
func TestLocalUserReadsOnlyTheCache(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{Cluster: "cluster1"})
	admin := env.Connect(t, kvstore.AdminUser)
	p := env.Paths
	cache := p.Cache("cluster2")
	readable := []string{cache.Node("cluster2", "n1"), cache.Identity(131073), p.ClusterConfig("cluster2"),
		p.Synced("cluster2", cache.NodesPrefix()), p.Heartbeat()}
	hidden := []string{p.NodesPrefix() + "/cluster1/n1", "cilium/secret"}
	for _, k := range append(append([]string{}, readable...), hidden...) {
		put(t, admin.Etcd(), k, "v")
	}
	cli := env.Connect(t, kvstore.LocalUser).Etcd()
	for _, k := range readable {
		if resp, err := cli.Get(t.Context(), k); err != nil || len(resp.Kvs) != 1 {
			t.Errorf("read %s as %s: %v", k, kvstore.LocalUser, err)
		}
		if _, err := cli.Put(t.Context(), k, "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("write %s as %s: err = %v, want permission denied", k, kvstore.LocalUser, err)
		}
	}
	if resp, err := cli.Get(t.Context(), p.Heartbeat(), clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 1 {
		t.Errorf("list the heartbeat prefix %s as Cilium does: %v", p.Heartbeat(), err)
	}
	for _, k := range hidden {
		if _, err := cli.Get(t.Context(), k); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("read %s as %s: err = %v, want permission denied", k, kvstore.LocalUser, err)
		}
	}
}
