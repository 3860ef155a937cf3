package drops

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// rec is a record at t0 + i seconds, told apart by its endpoint ID.
func rec(i int) Record {
	return Record{Time: t0.Add(time.Duration(i) * time.Second), EndpointID: uint16(i), Direction: "ingress", Reason: "policy-denied"}
}

func ids(recs []Record) []int {
	out := []int{}
	for _, r := range recs {
		out = append(out, int(r.EndpointID))
	}
	return out
}

func TestRing(t *testing.T) {
	for _, tc := range []struct {
		name        string
		capacity    int
		add         int // records 1..add
		q           Query
		want        []int
		overwritten uint64
	}{
		{name: "empty", capacity: 3, want: []int{}},
		{name: "not full", capacity: 3, add: 2, want: []int{1, 2}},
		{name: "full", capacity: 3, add: 3, want: []int{1, 2, 3}},
		{name: "wrapped keeps the newest, oldest first", capacity: 3, add: 5, want: []int{3, 4, 5}, overwritten: 2},
		{name: "wrapped many times", capacity: 3, add: 10, want: []int{8, 9, 10}, overwritten: 7},
		{name: "capacity one", capacity: 1, add: 4, want: []int{4}, overwritten: 3},
		{name: "since is exclusive", capacity: 5, add: 5, q: Query{Since: rec(3).Time}, want: []int{4, 5}},
		{name: "since before everything", capacity: 5, add: 5, q: Query{Since: t0}, want: []int{1, 2, 3, 4, 5}},
		{name: "since after everything", capacity: 5, add: 5, q: Query{Since: rec(9).Time}, want: []int{}},
		{name: "limit keeps the newest", capacity: 5, add: 5, q: Query{Limit: 2}, want: []int{4, 5}},
		{name: "limit above the count", capacity: 5, add: 3, q: Query{Limit: 10}, want: []int{1, 2, 3}},
		{name: "since then limit", capacity: 5, add: 5, q: Query{Since: rec(1).Time, Limit: 3}, want: []int{3, 4, 5}},
		{name: "since and limit on a wrapped ring", capacity: 4, add: 9, q: Query{Since: rec(6).Time, Limit: 2}, want: []int{8, 9}, overwritten: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRing(tc.capacity)
			for i := 1; i <= tc.add; i++ {
				r.Add(rec(i))
			}
			got, overwritten := r.List(tc.q)
			if d := cmp.Diff(tc.want, ids(got)); d != "" {
				t.Errorf("records (-want +got):\n%s", d)
			}
			if overwritten != tc.overwritten {
				t.Errorf("overwritten %d, want %d", overwritten, tc.overwritten)
			}
		})
	}
}

func TestRingDefaultCapacity(t *testing.T) {
	for _, c := range []int{0, -1} {
		if got := NewRing(c).Cap(); got != DefaultCapacity {
			t.Errorf("NewRing(%d).Cap() = %d, want %d", c, got, DefaultCapacity)
		}
	}
}

// List returns a copy: later writes do not change it.
func TestRingListIsACopy(t *testing.T) {
	r := NewRing(2)
	r.Add(rec(1))
	r.Add(rec(2))
	got, _ := r.List(Query{})
	r.Add(rec(3))
	r.Add(rec(4))
	if d := cmp.Diff([]int{1, 2}, ids(got)); d != "" {
		t.Errorf("earlier List changed (-want +got):\n%s", d)
	}
}

// Writers and readers at once (run with -race): every List is a window of
// consecutive records, and the counts add up.
func TestRingConcurrent(t *testing.T) {
	const writers, each, capacity = 4, 500, 64
	r := NewRing(capacity)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r.Add(Record{Reason: fmt.Sprint(w), EndpointID: uint16(i)})
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			got, _ := r.List(Query{})
			if len(got) > capacity {
				t.Errorf("List returned %d records, capacity %d", len(got), capacity)
				return
			}
		}
	})
	wg.Wait()
	got, overwritten := r.List(Query{})
	if len(got) != capacity || overwritten != writers*each-capacity {
		t.Errorf("after %d adds: %d held, %d overwritten; want %d and %d", writers*each, len(got), overwritten, capacity, writers*each-capacity)
	}
}

// Add is on the path of every drop: it does not allocate.
func TestRingAddAllocs(t *testing.T) {
	r := NewRing(8)
	x := rec(1)
	if n := testing.AllocsPerRun(100, func() { r.Add(x) }); n != 0 {
		t.Errorf("Add allocates %v times, want 0", n)
	}
}

func BenchmarkRingAdd(b *testing.B) {
	r := NewRing(DefaultCapacity)
	x := rec(1)
	b.ReportAllocs()
	for b.Loop() {
		r.Add(x)
	}
}
