package remote_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
	"github.com/clustermesh/clustermesh/kvstore"
)

// connectPinned runs a connection to p whose config pins the cluster ID pin
// (0: none), as `clustermesh connect` records it.
func connectPinned(t *testing.T, p *meshtest.Peer, cfg kvstore.ClientConfig, pin identity.ClusterID, reg *remote.Registry, sink remote.Sink) *remote.Cluster {
	t.Helper()
	c, err := remote.New(remote.Config{
		Name: p.Name, Client: cfg, Paths: p.Env.Paths, LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255,
		Registry: reg, Sink: sink, Backoff: fast, Trust: remote.Trust{ClusterID: pin},
	})
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Go(t, c.Run)
	return c
}

// startNamedPeer starts peer name announcing cluster ID id, with one node.
func startNamedPeer(t *testing.T, name string, id uint32) *meshtest.Peer {
	t.Helper()
	p := meshtest.StartPeer(t, name, id)
	p.Put(t, p.Env.Paths.Node(name, "n1"), fmt.Sprintf(`{"Name":"n1","Cluster":%q,"IPv4AllocCIDR":{"IP":"10.%d.1.0","Mask":"////AA=="},"ClusterID":%d}`, name, id, id))
	p.Synced()
	return p
}

func (s *memSink) has(key string) bool {
	for _, k := range s.keys() {
		if strings.HasPrefix(k, key+" = ") {
			return true
		}
	}
	return false
}

// A peer announcing another cluster ID than connect recorded is refused,
// again and again, and nothing of it is accepted.
func TestPinnedClusterIDMismatchRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		announces uint32
		pin       identity.ClusterID
		wantErr   string // "" when accepted
	}{
		{name: "pinned and announced", announces: 2, pin: 2},
		{name: "nothing pinned", announces: 2},
		{name: "another ID announced", announces: 2, pin: 5,
			wantErr: "peer cluster2 announces cluster ID 2 but `clustermesh connect` recorded 5: nothing of it is accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startNamedPeer(t, "cluster2", tc.announces)
			sink := newMemSink()
			c := connectPinned(t, p, p.Env.ClientConfig(t, kvstore.RemoteUser), tc.pin, remote.NewRegistry("cluster1", 1), sink)
			if tc.wantErr == "" {
				eventually(t, "peer ready", func() bool { return c.Status().Ready && sink.has("node cluster2/n1") })
				return
			}
			eventually(t, "peer refused, and retried", func() bool {
				st := c.Status()
				return !st.Connected && st.Failures >= 2 && strings.Contains(st.LastFailure, tc.wantErr)
			})
			if got := sink.keys(); len(got) != 0 {
				t.Fatalf("state of a refused peer: %v", got)
			}
		})
	}
}

// A pinned ID must be a valid cluster ID.
func TestPinnedClusterIDOutOfRange(t *testing.T) {
	_, err := remote.New(remote.Config{Name: "cluster2", MaxConnectedClusters: 255, Trust: remote.Trust{ClusterID: 300},
		Registry: remote.NewRegistry("cluster1", 1), Sink: newMemSink()})
	if err == nil || !strings.Contains(err.Error(), "cluster-id 300 recorded in its config file") {
		t.Fatalf("err = %v, want it to name the recorded cluster-id", err)
	}
}

// A peer may not take the cluster ID another peer's config pins, whatever
// the order in which they come: the pinned owner wins, the squatter is
// refused, and what it announced under that ID is drained.
func TestClusterIDSquattingRefused(t *testing.T) {
	const squat = "cluster ID 3 announced by peer cluster2 is the one `clustermesh connect` recorded for peer cluster3"
	for _, tc := range []struct {
		name string
		// ownerFirst: the owner (pinned) runs before the squatter;
		// ownerDown: the owner's etcd does not answer (it never
		// connects, but its config is there).
		ownerFirst, ownerDown bool
		squatterPin           identity.ClusterID
		wantSquatter          []string // in the squatter's last failure
	}{
		{name: "owner connected first", ownerFirst: true, wantSquatter: []string{squat}},
		{name: "owner configured but not connected", ownerFirst: true, ownerDown: true, wantSquatter: []string{squat}},
		{name: "squatter connected first", ownerFirst: false, wantSquatter: []string{squat}},
		{name: "squatter pinned to another ID", ownerFirst: false, squatterPin: 2,
			wantSquatter: []string{"peer cluster2 announces cluster ID 3 but `clustermesh connect` recorded 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := remote.NewRegistry("cluster1", 1)
			sink := newMemSink()
			owner, squatter := startNamedPeer(t, "cluster3", 3), startNamedPeer(t, "cluster2", 3)
			ownerCfg := owner.Env.ClientConfig(t, kvstore.RemoteUser)
			if tc.ownerDown {
				ownerCfg.Endpoints = []string{"https://127.0.0.1:1"}
			}
			var o, s *remote.Cluster
			startOwner := func() { o = connectPinned(t, owner, ownerCfg, 3, reg, sink) }
			startSquatter := func() {
				s = connectPinned(t, squatter, squatter.Env.ClientConfig(t, kvstore.RemoteUser), tc.squatterPin, reg, sink)
			}
			if tc.ownerFirst {
				startOwner()
				if !tc.ownerDown {
					eventually(t, "owner ready", func() bool { return o.Status().Ready })
				}
				startSquatter()
			} else {
				startSquatter()
				if tc.squatterPin == 0 { // nobody pins 3 yet: the first claim wins, for now
					eventually(t, "squatter ready before the owner comes", func() bool {
						return s.Status().Ready && sink.has("node cluster2/n1")
					})
				}
				startOwner()
			}
			eventually(t, "squatter refused", func() bool {
				st := s.Status()
				if st.Connected || st.Failures == 0 {
					return false
				}
				for _, w := range tc.wantSquatter {
					if !strings.Contains(st.LastFailure, w) {
						return false
					}
				}
				return !sink.has("node cluster2/n1")
			})
			if !tc.ownerDown {
				eventually(t, "owner ready", func() bool { return o.Status().Ready && sink.has("node cluster3/n1") })
			}
			// The squatter keeps being refused and nothing of it comes back.
			testutil.Consistently(t, 300*time.Millisecond, "squatter kept out", func() bool {
				return !s.Status().Connected && !sink.has("node cluster2/n1")
			})
		})
	}
}

// The registry alone: the pinned owner wins in either order, and the
// evicted holder is told by whom.
func TestRegistryPins(t *testing.T) {
	reg := remote.NewRegistry("cluster1", 1)
	h, err := reg.Claim("cluster2", 3)
	if err != nil {
		t.Fatal(err)
	}
	reg.Pin("cluster3", 3)
	select {
	case <-h.Lost():
	default:
		t.Fatal("an unpinned holder kept an ID another peer pins")
	}
	if h.TakenBy() != "cluster3" {
		t.Fatalf("TakenBy = %q, want cluster3", h.TakenBy())
	}
	if _, err := reg.Claim("cluster2", 3); !errors.Is(err, remote.ErrClusterIDPinned) {
		t.Fatalf("squatter's claim: %v, want ErrClusterIDPinned", err)
	}
	h3, err := reg.Claim("cluster3", 3)
	if err != nil {
		t.Fatalf("pinned owner's claim: %v", err)
	}
	// Two peers pinning one ID (a hand-written config): the first holds it.
	reg.Pin("cluster4", 3)
	if _, err := reg.Claim("cluster4", 3); err == nil || !strings.Contains(err.Error(), "already used by peer cluster3") {
		t.Fatalf("second pinned claim: %v", err)
	}
	select {
	case <-h3.Lost():
		t.Fatal("a pinned holder lost its ID to another pin")
	default:
	}
	// Unpinned, the ID is free for the first claim again.
	reg.Unpin("cluster3")
	reg.Unpin("cluster4")
	reg.Release("cluster3")
	if _, err := reg.Claim("cluster2", 3); err != nil {
		t.Fatalf("claim after the pin is gone: %v", err)
	}
	if _, err := reg.Claim("cluster2", 1); err == nil || !strings.Contains(err.Error(), "local cluster's (cluster1)") {
		t.Fatalf("claim of the local ID: %v", err)
	}
}
