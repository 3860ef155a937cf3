package observe

import (
	"container/heap"
	"slices"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

// merger orders the flows streamed by several agents: a flow is released
// once it is older than now minus the window, so that a flow another agent
// reports a little later still comes out in time order. It is not safe for
// concurrent use.
type merger struct {
	window time.Duration
	h      flowHeap
}

// push holds f until it is ready.
func (m *merger) push(f flowapi.Flow) { heap.Push(&m.h, f) }

// ready returns the held flows older than now - window, oldest first.
func (m *merger) ready(now time.Time) []flowapi.Flow {
	var out []flowapi.Flow
	for len(m.h) > 0 && !m.h[0].Time.After(now.Add(-m.window)) {
		out = append(out, heap.Pop(&m.h).(flowapi.Flow))
	}
	return out
}

// drain returns every held flow, oldest first.
func (m *merger) drain() []flowapi.Flow {
	var out []flowapi.Flow
	for len(m.h) > 0 {
		out = append(out, heap.Pop(&m.h).(flowapi.Flow))
	}
	return out
}

// flowHeap is a min-heap of flows by time (container/heap).
type flowHeap []flowapi.Flow

func (h flowHeap) Len() int           { return len(h) }
func (h flowHeap) Less(i, j int) bool { return h[i].Time.Before(h[j].Time) }
func (h flowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *flowHeap) Push(x any)        { *h = append(*h, x.(flowapi.Flow)) }
func (h *flowHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	*h = old[:len(old)-1]
	return f
}

// mergeHistory orders the held flows of every agent by time (stable: an
// agent's own order among equal times stays) and keeps the newest last
// (all when last is not positive).
func mergeHistory(fs []flowapi.Flow, last int) []flowapi.Flow {
	slices.SortStableFunc(fs, func(a, b flowapi.Flow) int { return a.Time.Compare(b.Time) })
	if last > 0 && len(fs) > last {
		fs = fs[len(fs)-last:]
	}
	return fs
}
