package desired

import (
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/state"
)

// Source feeds a reconciler incrementally (reconciler.Incremental) from
// the state: the keys the changes to its tables since its last call may
// have changed, read one at a time through a point-lookup join that agrees
// with the full one. It also wakes on the initialized table, whose changes
// make the agent ready to prune. One reconciler owns it: its methods are
// called from that goroutine only.
type Source[K comparable, V any] struct {
	st     *state.State
	tables []string
	join   Join[K, V]
	sub    *state.Subscription // from the first Next; owned by the reconciler
	wake   chan struct{}       // Changed before the first Next
}

// Join is one desired table computed from a snapshot, whole (All) or one
// key at a time (At); Keys adds to keys those a change of a joined table
// may have changed.
type Join[K comparable, V any] interface {
	All(sn *state.Snapshot) map[K]V
	At(sn *state.Snapshot, k K) (V, bool)
	Keys(sn *state.Snapshot, c state.Change, keys map[K]struct{})
}

var _ reconciler.Incremental[int, int] = (*Source[int, int])(nil)

// NewSource returns the source of join over tables of st. Its subscription
// starts with the first Next, which is a full read.
func NewSource[K comparable, V any](st *state.State, join Join[K, V], tables ...string) *Source[K, V] {
	s := &Source[K, V]{st: st, join: join, wake: make(chan struct{}, 1),
		tables: append(append([]string(nil), tables...), state.TableInitialized)}
	s.wake <- struct{}{}
	return s
}

// Changed implements reconciler.Incremental.
func (s *Source[K, V]) Changed() <-chan struct{} {
	if s.sub == nil {
		return s.wake
	}
	return s.sub.Changed()
}

// Next implements reconciler.Incremental.
func (s *Source[K, V]) Next() (reconciler.View[K, V], []K, bool) {
	if s.sub == nil {
		s.sub = s.st.Subscribe(s.tables...)
	}
	changes, sn, lost := s.sub.Next()
	set := map[K]struct{}{}
	for _, c := range changes {
		s.join.Keys(sn, c, set)
	}
	keys := make([]K, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	return view[K, V]{sn: sn, join: s.join}, keys, lost
}

// view is the desired table of one snapshot.
type view[K comparable, V any] struct {
	sn   *state.Snapshot
	join Join[K, V]
}

func (v view[K, V]) At(k K) (V, bool) { return v.join.At(v.sn, k) }
func (v view[K, V]) All() map[K]V     { return v.join.All(v.sn) }
