package kvstoremesh_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
)

// The cache restarted while the peer churns: a local agent reading the
// cache sees no delete of an entry the peer did not delete (the new cache
// prunes nothing before the peer's list is complete and rewrites what did
// not change), and ends with exactly the peer's state.
func TestCacheRestartUnderChurnNoSpuriousDelete(t *testing.T) {
	l := startLocal(t)
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.Identity(131073), labels)
	const initial = 300
	for i := range initial {
		p.Put(t, paths.IPDefaultPrefix()+ipOf(i), ipEntry(ipOf(i), 131073))
	}
	p.Synced()
	p.WriteMeshFile(t, l.dir)
	c1, stop1 := runCache(t, l.config())
	eventually(t, "first cache synced", func() bool { return cacheSynced(c1, "cluster2") })
	sink := newRecSink()
	a := l.agent(t, "cluster2", sink)
	eventually(t, "agent ready", func() bool { return a.Status().Ready && len(sink.keys()) == initial+2 })

	// Churn: new entries added, and every third initial entry deleted, by
	// the peer, before, during and after the restart.
	var (
		mu      sync.Mutex
		deleted = map[string]bool{}
		added   = initial
	)
	step := func() {
		mu.Lock()
		defer mu.Unlock()
		ip := ipOf(added)
		p.Put(t, paths.IPDefaultPrefix()+ip, ipEntry(ip, 131073))
		victim := (added - initial) * 3 // the initial entries first
		if victim >= initial {
			victim = added - 60 // then entries the churn added
		}
		if v := ipOf(victim); victim%3 == 0 && !deleted["ip "+v] {
			p.Delete(t, paths.IPDefaultPrefix()+v)
			deleted["ip "+v] = true
		}
		added++
	}
	ctx, cancel := context.WithCancel(t.Context())
	restarted, churned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(churned)
		// At about 500 changes a second, until the restarted cache
		// synced, then 50 steps more.
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for after := 0; ctx.Err() == nil && after < 50 && added < initial+20000; {
			<-tick.C
			step()
			select {
			case <-restarted:
				after++
			default:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-churned })

	progress := func() int {
		mu.Lock()
		defer mu.Unlock()
		return added
	}
	eventually(t, "churn under way", func() bool { return progress() > initial+50 })
	stop1()
	atStop := progress()
	c2, _ := runCache(t, l.config())
	eventually(t, "restarted cache synced", func() bool { return cacheSynced(c2, "cluster2") })
	atSync := progress()
	close(restarted)
	<-churned

	want := []string{"identity 131073", "node n1"}
	for i := range added {
		if k := "ip " + ipOf(i); !deleted[k] {
			want = append(want, k)
		}
	}
	slices.Sort(want)
	eventually(t, "agent holds the peer's state", func() bool { return slices.Equal(sink.keys(), want) })
	var spurious []string
	for _, k := range sink.seenDeletes() {
		if !deleted[k] {
			spurious = append(spurious, k)
		}
	}
	if len(spurious) > 0 {
		t.Fatalf("the agent saw %d deletes of entries the peer did not delete, e.g. %v", len(spurious), spurious[:min(5, len(spurious))])
	}
	t.Logf("churn: %d entries added (%d while the cache was down or resyncing), %d deleted by the peer; the agent saw %d deletes, 0 spurious",
		added-initial, atSync-atStop, len(deleted), len(sink.seenDeletes()))
}
