package status

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

func TestBuild(t *testing.T) {
	ready := PeerStatus{Name: "c2", Connected: true, Ready: true, ClusterID: 2,
		Synced: map[string]bool{"nodes": true, "identities": true, "ip": true, "services": true}}
	in := Inputs{
		Cluster: "c1", ClusterID: 1, Configured: []string{"c2", "c3"},
		APIServer: APIServer{Ready: true, Replicas: 1, ReadyReplicas: 1, EtcdReachable: true, ClusterConfig: true},
		Nodes: []NodeStatus{
			{Node: "n2", Status: &AgentStatus{Peers: []PeerStatus{ready,
				{Name: "c3", LastFailure: "TLS handshake with etcd failed: x509: certificate signed by unknown authority"}}}},
			{Node: "n1", Status: &AgentStatus{Peers: []PeerStatus{ready,
				{Name: "c3", Connected: true, Synced: map[string]bool{"nodes": true}, Rejected: map[string]uint64{"ip: outside": 3}},
				{Name: "old", Connected: true}}}},
			{Node: "n3", Err: errors.New("pod clustermesh-agent-x is Pending")},
		},
	}
	r := Build(in)
	if d := cmp.Diff(MinAvgMax{Min: 1, Avg: 2, Max: 3}, r.ConnectedPeers); d != "" {
		t.Errorf("connected peers (-want +got):\n%s", d)
	}
	if r.Nodes != 3 || r.Answered != 2 {
		t.Errorf("nodes %d answered %d", r.Nodes, r.Answered)
	}
	want := []Peer{
		{Name: "c2", Configured: true, ClusterID: 2, Connected: 2, Ready: 2, Synced: map[string]int{"nodes": 2, "identities": 2, "ip": 2, "services": 2}},
		{Name: "c3", Configured: true, Connected: 1, Synced: map[string]int{"nodes": 1, "identities": 0, "ip": 0, "services": 0}, Rejected: 3},
		{Name: "old", Connected: 1, Synced: map[string]int{"nodes": 0, "identities": 0, "ip": 0, "services": 0}},
	}
	if d := cmp.Diff(want, r.Peers); d != "" {
		t.Errorf("peers (-want +got):\n%s", d)
	}
	var got []string
	for _, e := range r.Errors {
		got = append(got, e.Node+"/"+e.Peer+": "+e.Message+" | "+e.Hint)
	}
	for i, w := range []string{
		"n1/c3: connected, waiting for the peer's synced markers of identities, ip, services",
		"n1/old: the agent still has this peer",
		"n2/c3: not connected: TLS handshake",
		"n3/: agent did not answer: pod clustermesh-agent-x is Pending",
	} {
		if i >= len(got) || !strings.HasPrefix(got[i], w) {
			t.Errorf("error %d: want prefix %q, got %q", i, w, got)
		}
	}
	if len(got) > 2 && !strings.Contains(got[2], "run `clustermesh connect` again") {
		t.Errorf("TLS failure hint: %s", got[2])
	}
	ok, missing := r.Complete()
	if ok || !strings.Contains(strings.Join(missing, ";"), "peer c3: connected on 1/3 nodes, ready on 0/3") {
		t.Errorf("complete %v, missing %v", ok, missing)
	}
}

// Peers that agents read through the cache of remote state are reported
// with the cache's state: a peer the cache does not publish, or has not
// synced, is an error naming the kinds and where to look; a peer the cache
// lost (published not connected) is an error with the cache's reason while
// the agents, connected to the local etcd, keep its state.
func TestBuildThroughCache(t *testing.T) {
	all := map[string]bool{"nodes": true, "identities": true, "ip": true, "services": true}
	peer := func(name string) PeerStatus {
		return PeerStatus{Name: name, Connected: true, Ready: true, Synced: all, ThroughCache: true}
	}
	in := Inputs{
		Cluster: "c1", ClusterID: 1, Configured: []string{"c2", "c3", "c4", "c5"},
		APIServer: APIServer{Ready: true, Replicas: 1, ReadyReplicas: 1, EtcdReachable: true, ClusterConfig: true, Cache: []CachedPeer{
			{Name: "c2", ClusterID: 2, Synced: all, Entries: map[string]int64{"nodes": 2, "ip": 10}},
			{Name: "c3", ClusterID: 3, Synced: map[string]bool{"nodes": true}},
			{Name: "c5", ClusterID: 5, Synced: all, Entries: map[string]int64{"ip": 7}, Connection: &schema.CachePeerState{Ready: true,
				LastFailure: "peer c5 unreachable: its etcd has not answered since 2026-12-04T10:00:00Z", LastFailureTime: time.Date(2026, 12, 4, 10, 0, 10, 0, time.UTC)}},
		}},
		Nodes: []NodeStatus{{Node: "n1", Status: &AgentStatus{Peers: []PeerStatus{peer("c2"), peer("c3"), peer("c4"), peer("c5")}}}},
	}
	r := Build(in)
	var got []string
	for _, e := range r.Errors {
		got = append(got, e.Peer+": "+e.Message)
	}
	want := []string{
		"c3: the cache of remote state has not synced identities, ip, services of this peer",
		"c4: 1 nodes read this peer through the cache of remote state, which does not publish it",
		"c5: the cache of remote state is not connected to this peer: peer c5 unreachable: its etcd has not answered since 2026-12-04T10:00:00Z (1 nodes read it through the cache)",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("errors (-want +got):\n%s", d)
	}
	if r.Peers[0].ThroughCache != 1 {
		t.Errorf("peer c2 through the cache on %d nodes, want 1", r.Peers[0].ThroughCache)
	}
	if ok, missing := r.Complete(); ok || !slices.Contains(missing, "peer c5: the cache of remote state is not connected to it") {
		t.Errorf("complete %v, missing %q: want the cache's lost peer c5 named", ok, missing)
	}
	var b strings.Builder
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"OK   cache:     peer c2 (ID 2): synced [nodes identities ip services]; entries nodes 2, identities 0, ip 10, services 0",
		"FAIL cache:     peer c3 (ID 3): synced [nodes]",
		"FAIL cache:     peer c5 (ID 5): NOT CONNECTED since 2026-12-04T10:00:10Z, synced [nodes identities ip services]",
		"OK   peer c2 (ID 0) through the cache: connected on 1/1 nodes",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("text output lacks %q:\n%s", line, b.String())
		}
	}
}
