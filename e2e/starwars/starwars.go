//go:build linux

// Package starwars is the seeds' story on the bed: clusters with
// rebel-base, x-wing and tie-fighter pods, the global Service rebel-base
// and Cilium's cross-cluster policy example, as the demo and the
// end-to-end tests use them. It only drives the bed through the Kubernetes
// API, the CLI and connections from pods.
package starwars

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/workload"
	"github.com/clustermesh/clustermesh/examples"
)

// Namespace of the story's pods.
const Namespace = "default"

// World is the story's clusters and pods.
type World struct {
	Bed *bed.Bed
	// Pods by "cluster/name".
	Pods map[string]*bed.Pod
	// RebelBase is rebel-base's ClusterIP:port in each cluster.
	RebelBase map[string]string
}

// pods of each cluster and the node (index) each runs on.
var pods = []struct {
	name, app string
	node      int
}{{"rebel-base-a", "rebel-base", 0}, {"rebel-base-b", "rebel-base", 1}, {"x-wing", "x-wing", 1}, {"tie-fighter", "tie-fighter", 0}}

// AddCluster adds a cluster of two nodes with the story's pods and the
// global Service rebel-base (examples/global-service.yaml).
func (w *World) AddCluster(ctx context.Context, name string, id uint32) (*bed.Cluster, error) {
	c, err := w.Bed.AddCluster(ctx, bed.ClusterSpec{Name: name, ID: id, Nodes: 2})
	if err != nil {
		return nil, err
	}
	w.Bed.Logf("==> %s: pods rebel-base-a, rebel-base-b, x-wing, tie-fighter and the global Service rebel-base", name)
	for _, p := range pods {
		pod, err := c.Nodes[p.node].AddPod(ctx, Namespace, p.name, map[string]string{"name": p.app})
		if err != nil {
			return nil, err
		}
		w.Pods[name+"/"+p.name] = pod
	}
	svc, err := fs.ReadFile(examples.Manifests, "global-service.yaml")
	if err != nil {
		return nil, err
	}
	if err := c.Apply(ctx, string(svc)); err != nil {
		return nil, err
	}
	addr, err := c.ServiceAddr(ctx, Namespace, "rebel-base")
	if err != nil {
		return nil, err
	}
	w.RebelBase[name] = addr
	return c, nil
}

// New starts cluster1 and cluster2 with the story's pods and connects
// them.
func New(ctx context.Context, b *bed.Bed) (*World, error) {
	w := &World{Bed: b, Pods: map[string]*bed.Pod{}, RebelBase: map[string]string{}}
	for i, name := range []string{"cluster1", "cluster2"} {
		if _, err := w.AddCluster(ctx, name, uint32(i+1)); err != nil {
			return nil, err
		}
	}
	if err := b.Connect(ctx, "cluster1", "cluster2"); err != nil {
		return nil, err
	}
	return w, nil
}

// Pod returns the pod "cluster/name"; it panics on a name the story does
// not have (a bug of the caller).
func (w *World) Pod(key string) *bed.Pod {
	p, ok := w.Pods[key]
	if !ok {
		panic("starwars: no pod " + key)
	}
	return p
}

// Tally counts answers by the cluster that served them ("" for failed
// connections).
type Tally map[string]int

func (t Tally) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(t)) {
		name := k
		if name == "" {
			name = "failed"
		}
		parts = append(parts, fmt.Sprintf("%s=%d", name, t[k]))
	}
	return strings.Join(parts, " ")
}

// Only reports whether every connection succeeded and was served by one
// of clusters, each at least once.
func (t Tally) Only(clusters ...string) bool {
	if t[""] > 0 {
		return false
	}
	for k := range t {
		if !slices.Contains(clusters, k) {
			return false
		}
	}
	for _, c := range clusters {
		if t[c] == 0 {
			return false
		}
	}
	return true
}

// Ask makes n new TCP connections from the pod to addr and tallies who
// answered.
func Ask(ctx context.Context, from *bed.Pod, addr string, n int) (Tally, error) {
	t := Tally{}
	for range n {
		r, err := from.Dial(ctx, workload.DialRequest{Addr: addr, Message: "hello", TimeoutMS: 1000})
		if err != nil {
			return nil, err
		}
		who := ""
		if r.Error == "" {
			who, _, _ = strings.Cut(r.Reply, "/")
		}
		t[who]++
	}
	return t, nil
}

// WaitTally asks n connections at a time until want holds, for at most d,
// and returns the last tally.
func (w *World) WaitTally(ctx context.Context, from *bed.Pod, addr string, n int, d time.Duration, what string, want func(Tally) bool) (Tally, error) {
	var last Tally
	err := w.Bed.WaitUntil(ctx, d, what, func(ctx context.Context) (bool, string) {
		t, err := Ask(ctx, from, addr, n)
		if err != nil {
			return false, err.Error()
		}
		last = t
		return want(t), t.String()
	})
	return last, err
}
