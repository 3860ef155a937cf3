package observe

import (
	"container/heap"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

// at is a flow at t0 + ms milliseconds.
func at(ms int) flowapi.Flow { return flowapi.Flow{Time: t0.Add(time.Duration(ms) * time.Millisecond)} }

func millis(fs []flowapi.Flow) []int {
	out := []int{}
	for _, f := range fs {
		out = append(out, int(f.Time.Sub(t0)/time.Millisecond))
	}
	return out
}

// The merger releases flows in time order once they are older than the
// window, whatever order the agents sent them in.
func TestMerger(t *testing.T) {
	m := merger{window: 100 * time.Millisecond}
	for _, ms := range []int{50, 10, 120, 30, 200} {
		m.push(at(ms))
	}
	now := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	if d := cmp.Diff([]int{}, millis(m.ready(now(100)))[0:0]); d != "" {
		t.Fatal(d)
	}
	if got := millis(m.ready(now(140))); !cmp.Equal(got, []int{10, 30}) {
		t.Errorf("ready at 140: %v, want [10 30]", got)
	}
	m.push(at(40)) // late, from a slower agent: still before the others
	if got := millis(m.ready(now(220))); !cmp.Equal(got, []int{40, 50, 120}) {
		t.Errorf("ready at 220: %v, want [40 50 120]", got)
	}
	if got := millis(m.drain()); !cmp.Equal(got, []int{200}) {
		t.Errorf("drain: %v, want [200]", got)
	}
}

func TestMergeHistory(t *testing.T) {
	agents := []flowapi.Flow{at(1), at(4), at(6), at(2), at(3), at(5)} // two agents, each in order
	if got := millis(mergeHistory(append([]flowapi.Flow{}, agents...), 0)); !cmp.Equal(got, []int{1, 2, 3, 4, 5, 6}) {
		t.Errorf("merged: %v", got)
	}
	if got := millis(mergeHistory(append([]flowapi.Flow{}, agents...), 4)); !cmp.Equal(got, []int{3, 4, 5, 6}) {
		t.Errorf("last 4: %v", got)
	}
}

// refHeap is the container/heap the merger used first: the flows come out
// in the same order, equal times included.
type refHeap []flowapi.Flow

func (h refHeap) Len() int           { return len(h) }
func (h refHeap) Less(i, j int) bool { return h[i].Time.Before(h[j].Time) }
func (h refHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *refHeap) Push(x any)        { *h = append(*h, x.(flowapi.Flow)) }
func (h *refHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	*h = old[:len(old)-1]
	return f
}

func TestFlowHeapAsContainerHeap(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var got flowHeap
	var want refHeap
	for i := range 5000 {
		if r.IntN(3) == 0 && len(got) > 0 {
			g, w := got.pop(), heap.Pop(&want).(flowapi.Flow)
			if g.Time != w.Time || g.Src.Port != w.Src.Port {
				t.Fatalf("pop %d: %v port %d, container/heap %v port %d", i, g.Time, g.Src.Port, w.Time, w.Src.Port)
			}
			continue
		}
		f := at(r.IntN(50)) // equal times, told apart by the port
		f.Src.Port = uint16(i)
		got.push(f)
		heap.Push(&want, f)
	}
}
