package observe

import (
	"slices"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

// merger orders the flows streamed by several agents: a flow is released
// once it is older than now minus the window, so that a flow another agent
// reports a little later still comes out in time order. It is not safe for
// concurrent use; what ready and drain return is valid until the next
// call.
type merger struct {
	window time.Duration
	h      flowHeap
	out    []flowapi.Flow // of ready and drain, reused
}

// push holds f until it is ready.
func (m *merger) push(f flowapi.Flow) { m.h.push(f) }

// ready returns the held flows older than now - window, oldest first.
func (m *merger) ready(now time.Time) []flowapi.Flow {
	m.out = m.out[:0]
	for len(m.h) > 0 && !m.h[0].Time.After(now.Add(-m.window)) {
		m.out = append(m.out, m.h.pop())
	}
	return m.out
}

// drain returns every held flow, oldest first.
func (m *merger) drain() []flowapi.Flow {
	m.out = m.out[:0]
	for len(m.h) > 0 {
		m.out = append(m.out, m.h.pop())
	}
	return m.out
}

// flowHeap is a min-heap of flows by time, as container/heap keeps one,
// without boxing each flow in an interface.
type flowHeap []flowapi.Flow

func (h flowHeap) less(i, j int) bool { return h[i].Time.Before(h[j].Time) }

func (h *flowHeap) push(f flowapi.Flow) {
	*h = append(*h, f)
	s := *h
	for j := len(s) - 1; j > 0; {
		i := (j - 1) / 2 // parent
		if i == j || !s.less(j, i) {
			break
		}
		s[i], s[j] = s[j], s[i]
		j = i
	}
}

func (h *flowHeap) pop() flowapi.Flow {
	s := *h
	n := len(s) - 1
	s[0], s[n] = s[n], s[0]
	for i := 0; ; {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && s.less(r, j) {
			j = r
		}
		if !s.less(j, i) {
			break
		}
		s[i], s[j] = s[j], s[i]
		i = j
	}
	f := s[n]
	s[n] = flowapi.Flow{} // no reference kept
	*h = s[:n]
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
