package remote

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// The agent reads only the peer's own node and service prefixes, so a key
// under another cluster's name does not reach the validator through a
// watch; the validator still refuses one if it does (a mis-built prefix, a
// cache holding several clusters).
func TestValidatorRefusesAnotherClustersKeys(t *testing.T) {
	layout, _ := identity.NewLayout(255)
	sink := newRecordSink()
	rej := newRejections("cluster2", slog.New(slog.DiscardHandler), nil)
	for _, p := range []schema.Paths{schema.DefaultPaths(), schema.DefaultPaths().Cache("cluster2")} {
		v := newValidator("cluster2", 2, layout, p, sink, rej)
		node := `{"Name":"evil","Cluster":"cluster3","IPAddresses":[{"Type":"InternalIP","IP":"192.168.3.10"}],"IPv4AllocCIDR":{"IP":"10.3.1.0","Mask":"////AA=="},"ClusterID":3}`
		v.upsertNode(p.Node("cluster3", "evil"), []byte(node))
		svc := `{"cluster":"cluster3","namespace":"default","name":"x","frontends":{},"backends":{},"labels":{},"selector":{},"includeExternal":true,"shared":true,"clusterID":3}`
		v.upsertService(p.Service("cluster3", "default", "x"), []byte(svc))
		if n := v.entries(KindNodes) + v.entries(KindServices); n != 0 {
			t.Fatalf("%s: %d entries accepted", p.StatePrefix(), n)
		}
	}
	want := map[string]uint64{
		"nodes: " + ReasonForeignCluster:    2,
		"services: " + ReasonForeignCluster: 2,
	}
	if diff := cmp.Diff(want, rej.snapshot()); diff != "" {
		t.Fatalf("rejections (-want +got):\n%s", diff)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.nodes)+len(sink.services) != 0 {
		t.Fatalf("the sink got another cluster's state: %v %v", sink.nodes, sink.services)
	}
}

// An ip entry held back until its node arrives reaches the sink whole, as
// one accepted at once does: Cilium agents in kvstore identity mode write
// Metadata, which the held-back path used to drop.
func TestLateEntryKeepsEveryField(t *testing.T) {
	layout, _ := identity.NewLayout(255)
	for _, nodeFirst := range []bool{true, false} {
		sink := newRecordSink()
		v := newValidator("cluster2", 2, layout, schema.DefaultPaths(), sink, newRejections("cluster2", slog.New(slog.DiscardHandler), nil))
		p := v.paths
		node := func() {
			v.upsertNode(p.Node("cluster2", "n1"), []byte(`{"Name":"n1","Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":"192.168.2.10"}],"IPv4AllocCIDR":{"IP":"10.2.1.0","Mask":"////AA=="},"ClusterID":2}`))
		}
		entry := `{"IP":"10.2.1.5","Mask":null,"HostIP":"192.168.2.10","ID":131073,"Key":0,"Metadata":"cilium-global:cluster2:n1:99",` +
			`"K8sNamespace":"default","K8sPodName":"x","K8sServiceAccount":"sa","NamedPorts":[{"Name":"http","Port":80,"Protocol":"TCP"}]}`
		if nodeFirst {
			node()
		}
		key := p.IPDefaultPrefix() + "10.2.1.5"
		v.upsertIP(key, []byte(entry))
		if !nodeFirst {
			node()
		}
		want, err := p.DecodeIPEntry(key, []byte(entry))
		if err != nil {
			t.Fatal(err)
		}
		sink.mu.Lock()
		got, ok := sink.ips[netip.MustParsePrefix("10.2.1.5/32")]
		sink.mu.Unlock()
		if !ok {
			t.Fatalf("node first %v: entry not accepted", nodeFirst)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("node first %v: entry (-want +got):\n%s", nodeFirst, diff)
		}
	}
}
