package flows

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// fl is a flow at t0 + i seconds, told apart by its endpoint ID; odd ones
// are dropped.
func fl(i int) *flowapi.Flow {
	f := &flowapi.Flow{Time: t0.Add(time.Duration(i) * time.Second), EndpointID: uint16(i), Verdict: flowapi.VerdictForwarded}
	if i%2 == 1 {
		f.Verdict = flowapi.VerdictDropped
	}
	return f
}

func ids(fs []flowapi.Flow) []int {
	out := []int{}
	for _, f := range fs {
		out = append(out, int(f.EndpointID))
	}
	return out
}

func dropped(f *flowapi.Flow) bool { return f.Verdict == flowapi.VerdictDropped }

func TestRingLast(t *testing.T) {
	for _, tc := range []struct {
		name        string
		capacity    int
		add         int // flows 1..add
		last        int
		since       time.Time
		match       func(*flowapi.Flow) bool
		want        []int
		overwritten uint64
	}{
		{name: "empty", capacity: 3, want: []int{}},
		{name: "not full", capacity: 3, add: 2, want: []int{1, 2}},
		{name: "full", capacity: 3, add: 3, want: []int{1, 2, 3}},
		{name: "wrapped keeps the newest, oldest first", capacity: 3, add: 5, want: []int{3, 4, 5}, overwritten: 2},
		{name: "wrapped many times", capacity: 3, add: 10, want: []int{8, 9, 10}, overwritten: 7},
		{name: "capacity one", capacity: 1, add: 4, want: []int{4}, overwritten: 3},
		{name: "since is exclusive", capacity: 5, add: 5, since: fl(3).Time, want: []int{4, 5}},
		{name: "since before everything", capacity: 5, add: 5, since: t0, want: []int{1, 2, 3, 4, 5}},
		{name: "since after everything", capacity: 5, add: 5, since: fl(9).Time, want: []int{}},
		{name: "last keeps the newest", capacity: 5, add: 5, last: 2, want: []int{4, 5}},
		{name: "last above the count", capacity: 5, add: 3, last: 10, want: []int{1, 2, 3}},
		{name: "since then last", capacity: 5, add: 5, since: fl(1).Time, last: 3, want: []int{3, 4, 5}},
		{name: "since and last on a wrapped ring", capacity: 4, add: 9, since: fl(6).Time, last: 2, want: []int{8, 9}, overwritten: 5},
		{name: "match", capacity: 8, add: 8, match: dropped, want: []int{1, 3, 5, 7}},
		{name: "match then last", capacity: 8, add: 8, match: dropped, last: 3, want: []int{3, 5, 7}},
		{name: "match since last wrapped", capacity: 6, add: 12, match: dropped, since: fl(8).Time, last: 5, want: []int{9, 11}, overwritten: 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRing(tc.capacity)
			for i := 1; i <= tc.add; i++ {
				r.Add(fl(i))
			}
			got, next := r.Last(tc.last, tc.since, tc.match)
			if d := cmp.Diff(tc.want, ids(got)); d != "" {
				t.Errorf("flows (-want +got):\n%s", d)
			}
			if next != uint64(tc.add+1) {
				t.Errorf("next %d, want %d", next, tc.add+1)
			}
			st := r.Stats()
			if st.Overwritten != tc.overwritten || st.Added != uint64(tc.add) || st.Held != min(tc.add, tc.capacity) || st.Capacity != tc.capacity {
				t.Errorf("stats %+v, want %d added, %d overwritten, capacity %d", st, tc.add, tc.overwritten, tc.capacity)
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

// Read follows the ring by sequence number and counts what it missed.
func TestRingRead(t *testing.T) {
	r := NewRing(4)
	from := r.Next()
	got, from, missed := r.Read(from, nil, nil)
	if len(got) != 0 || from != 1 || missed != 0 {
		t.Fatalf("empty ring: %v, next %d, missed %d", ids(got), from, missed)
	}
	for i := 1; i <= 3; i++ {
		r.Add(fl(i))
	}
	got, from, missed = r.Read(from, nil, nil)
	if d := cmp.Diff([]int{1, 2, 3}, ids(got)); d != "" || from != 4 || missed != 0 {
		t.Fatalf("read 1..3 (-want +got):\n%s; next %d, missed %d", d, from, missed)
	}
	// The reader falls behind: 4..10 added, 4 held (7..10), 3 missed.
	for i := 4; i <= 10; i++ {
		r.Add(fl(i))
	}
	got, from, missed = r.Read(from, dropped, got[:0])
	if d := cmp.Diff([]int{7, 9}, ids(got)); d != "" || from != 11 || missed != 3 {
		t.Fatalf("read after falling behind (-want +got):\n%s; next %d, missed %d, want 11 and 3", d, from, missed)
	}
}

// A Read looks at maxScan flows at most; the next one goes on.
func TestRingReadBounded(t *testing.T) {
	r := NewRing(3 * maxScan)
	for i := range 2*maxScan + 5 {
		r.Add(fl(i))
	}
	got, from, _ := r.Read(1, nil, nil)
	if len(got) != maxScan || from != maxScan+1 {
		t.Fatalf("first read: %d flows, next %d; want %d and %d", len(got), from, maxScan, maxScan+1)
	}
	n := len(got)
	for from < r.Next() {
		got, from, _ = r.Read(from, nil, got[:0])
		n += len(got)
	}
	if n != 2*maxScan+5 {
		t.Fatalf("read %d flows in all, want %d", n, 2*maxScan+5)
	}
}

// Wait's channel is closed by the next Add, not before.
func TestRingWait(t *testing.T) {
	r := NewRing(2)
	w := r.Wait()
	select {
	case <-w:
		t.Fatal("closed before an Add")
	default:
	}
	r.Add(fl(1))
	select {
	case <-w:
	default:
		t.Fatal("not closed by Add")
	}
	w = r.Wait()
	select {
	case <-w:
		t.Fatal("a new Wait's channel closed before the next Add")
	default:
	}
}

// Last returns a copy: later writes do not change it.
func TestRingLastIsACopy(t *testing.T) {
	r := NewRing(2)
	r.Add(fl(1))
	r.Add(fl(2))
	got, _ := r.Last(0, time.Time{}, nil)
	r.Add(fl(3))
	r.Add(fl(4))
	if d := cmp.Diff([]int{1, 2}, ids(got)); d != "" {
		t.Errorf("earlier Last changed (-want +got):\n%s", d)
	}
}

// Writers, readers and followers at once (run with -race): the counts add
// up, and a follower sees every flow or counts it as missed.
func TestRingConcurrent(t *testing.T) {
	const writers, each, capacity = 4, 500, 64
	r := NewRing(capacity)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r.Add(&flowapi.Flow{Reason: fmt.Sprint(w), EndpointID: uint16(i)})
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			if got, _ := r.Last(0, time.Time{}, nil); len(got) > capacity {
				t.Errorf("Last returned %d flows, capacity %d", len(got), capacity)
				return
			}
		}
	})
	var seen, missed uint64
	wg.Go(func() {
		var buf []flowapi.Flow
		for from := uint64(1); from <= writers*each; {
			wake := r.Wait()
			var m uint64
			buf, from, m = r.Read(from, nil, buf[:0])
			seen, missed = seen+uint64(len(buf)), missed+m
			if len(buf) == 0 && m == 0 && from <= writers*each {
				<-wake
			}
		}
	})
	wg.Wait()
	st := r.Stats()
	if st.Held != capacity || st.Overwritten != writers*each-capacity {
		t.Errorf("after %d adds: %+v; want %d held and %d overwritten", writers*each, st, capacity, writers*each-capacity)
	}
	if seen+missed != writers*each {
		t.Errorf("follower: %d seen + %d missed, want %d", seen, missed, writers*each)
	}
}

// Add is on the path of every flow: it does not allocate (nobody waits).
func TestRingAddAllocs(t *testing.T) {
	r := NewRing(8)
	x := fl(1)
	if n := testing.AllocsPerRun(100, func() { r.Add(x) }); n != 0 {
		t.Errorf("Add allocates %v times, want 0", n)
	}
}

func BenchmarkRingAdd(b *testing.B) {
	r := NewRing(DefaultCapacity)
	x := fl(1)
	b.ReportAllocs()
	for b.Loop() {
		r.Add(x)
	}
}
