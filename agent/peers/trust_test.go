package peers_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/peers"
	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// What connect recorded in each file becomes the peer's Trust: the pinned
// cluster ID is enforced on the connection, and every peer's trust is
// published for the checks against the others.
func TestConfigFilesPinPeers(t *testing.T) {
	env := startPeer(t) // cluster2, announcing cluster ID 2
	dir := t.TempDir()
	sink := &countSink{nodes: map[string]int{}}
	m := peers.New(peers.Config{
		Dir: dir, PollInterval: 20 * time.Millisecond, LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255,
		Paths: schema.DefaultPaths(), Sink: sink, Backoff: backoff.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	status := func(name string) remote.Status {
		for _, st := range m.Status() {
			if st.Name == name {
				return st
			}
		}
		return remote.Status{}
	}
	wrongID := env.ClientConfig(t, kvstore.RemoteUser)
	wrongID.ClusterID, wrongID.PodCIDRs = 5, []string{"10.2.0.0/16"}
	writeConfig(t, dir, "cluster2", wrongID)
	unreachable := kvstore.ClientConfig{Endpoints: []string{"http://127.0.0.1:1"}, ClusterID: 3, PodCIDRs: []string{"10.3.0.0/16", "fd00:3::/48"}}
	writeConfig(t, dir, "cluster3", unreachable)
	writeConfig(t, dir, "cluster4", kvstore.ClientConfig{Endpoints: []string{"http://127.0.0.1:1"}}) // written before connect recorded anything

	want := map[string]remote.Trust{
		"cluster2": {ClusterID: 5, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}},
		"cluster3": {ClusterID: 3, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.3.0.0/16"), netip.MustParsePrefix("fd00:3::/48")}},
		"cluster4": {},
	}
	prefixes := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
	eventually(t, "every peer's trust published", func() bool { return cmp.Equal(want, m.Trusts(), prefixes) })
	if d := cmp.Diff(want, m.Trusts(), prefixes); d != "" {
		t.Fatalf("Trusts (-want +got):\n%s", d)
	}
	eventually(t, "cluster2 refused: it announces another ID than recorded", func() bool {
		return strings.Contains(status("cluster2").LastFailure, "peer cluster2 announces cluster ID 2 but `clustermesh connect` recorded 5")
	})
	if n, _ := sink.get(); n != 0 {
		t.Fatalf("%d nodes of a refused peer accepted", n)
	}

	// connect run again (the peer's ID recorded right): accepted.
	rightID := env.ClientConfig(t, kvstore.RemoteUser)
	rightID.ClusterID, rightID.PodCIDRs = 2, []string{"10.2.0.0/16"}
	writeConfig(t, dir, "cluster2", rightID)
	eventually(t, "cluster2 ready with the right ID recorded", func() bool { return status("cluster2").Ready })
	if got := m.Trusts()["cluster2"].ClusterID; got != 2 {
		t.Fatalf("cluster2's published trust pins %d, want 2", got)
	}

	// A bad recorded value connects nothing and is reported.
	if err := writeRaw(dir, "cluster4", "endpoints: [http://127.0.0.1:1]\npod-cidrs: [10.4.0.0]\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bad pod-cidrs reported", func() bool {
		_, published := m.Trusts()["cluster4"]
		return !published && strings.Contains(status("cluster4").LastFailure, `pod-cidrs: "10.4.0.0" is not a CIDR`)
	})
}

// writeRaw replaces the file name in dir with content, atomically.
func writeRaw(dir, name, content string) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}
