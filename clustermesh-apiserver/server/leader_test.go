package server_test

import (
	"testing"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/server"
	"github.com/clustermesh/clustermesh/kvstore"
)

// Two replicas, each with its own etcd: both export, one allocates; when it
// stops, the other takes over allocation.
func TestLeaderElectedAllocation(t *testing.T) {
	elect := func(name string) func(*server.Config) {
		return func(c *server.Config) {
			c.LeaderElect, c.LeaderElectionNamespace, c.Identity = true, "default", name
		}
	}
	a := newBed(t, elect("replica-a"))
	b := newStoppedBedOn(t, a.kube, elect("replica-b"))
	b.start(t)
	b.admin = b.client(t, kvstore.AdminUser)

	a.createPod(t, "default", "p1", map[string]string{"app": "one"}, "10.1.1.5", "192.168.1.10")
	a.waitSynced(t)
	b.waitSynced(t)
	for _, r := range []*bed{a, b} {
		eventually(t, "pod exported by every replica", func() bool { return r.get(t, r.paths.IPDefaultPrefix()+"10.1.1.5") != "" })
	}
	rc := mustRC(t, a)
	if ids, err := cmv1.ListIdentities(t.Context(), rc); err != nil || len(ids.Items) != 1 {
		t.Fatalf("identities with two replicas: %d, %v; want exactly 1", len(ids.Items), err)
	}

	a.stopApiserver() // releases the lease
	b.createPod(t, "default", "p2", map[string]string{"app": "two"}, "10.1.1.6", "192.168.1.10")
	eventually(t, "the other replica allocates and exports", func() bool { return b.get(t, b.paths.IPDefaultPrefix()+"10.1.1.6") != "" })
	if ids, err := cmv1.ListIdentities(t.Context(), rc); err != nil || len(ids.Items) != 2 {
		t.Fatalf("identities after failover: %d, %v; want 2", len(ids.Items), err)
	}
}
