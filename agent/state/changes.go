package state

import (
	"context"
	"math/bits"
	"net/netip"
	"reflect"
	"sync"

	"github.com/hashicorp/go-memdb"

	"github.com/clustermesh/clustermesh/identity"
)

// Change is one row's net change in a commit, as go-memdb's change tracking
// reports it: Before is nil for an insert, After is nil for a delete. Rows
// are the tables' own (*IPCacheEntry, *NodeRow, ...; the ipcache table's
// host entries come as their *ipBlock: use IPCachePrefixes; the identities
// table's rows as their *idBlock: use IdentityChanges). Like every row,
// they must not be modified.
type Change struct {
	Table         string
	Before, After any
}

// DefaultChangeLogLimit bounds the changes kept for one subscriber that
// falls behind; one that falls further behind loses them and
// resynchronises from a snapshot.
const DefaultChangeLogLimit = 1 << 18

// changeLog hands each commit's changes to the subscribers of the tables
// they touch. Each subscriber has its own queue of only its tables'
// changes, so a subscriber of rarely changing tables does not keep the
// changes (and the old rows they point to) of busy ones, and one that
// falls behind loses only its own. It is appended to by State.Update, in
// commit order.
type changeLog struct {
	mu    sync.Mutex // guards subs and every subscription's queue and lost
	limit int
	subs  map[*Subscription]struct{}
}

func newChangeLog(limit int) *changeLog {
	return &changeLog{limit: limit, subs: map[*Subscription]struct{}{}}
}

// append queues the changes of one commit for the subscribers of the
// tables they touch, and wakes them.
func (l *changeLog) append(cs memdb.Changes) {
	if len(cs) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for sub := range l.subs {
		n := len(sub.queue)
		if !sub.lost {
			for _, c := range cs {
				if sub.tables[c.Table] {
					sub.queue = append(sub.queue, Change{Table: c.Table, Before: c.Before, After: c.After})
				}
			}
			if len(sub.queue) > l.limit { // fell behind: it rereads everything
				sub.queue, sub.lost = nil, true
			}
		}
		if len(sub.queue) > n || sub.lost && sub.touches(cs) {
			select {
			case sub.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Subscription reads the changes of some tables commit after commit. It
// is owned by one goroutine.
type Subscription struct {
	l      *changeLog
	s      *State
	tables map[string]bool
	wake   chan struct{}
	queue  []Change // guarded by l.mu
	lost   bool     // guarded by l.mu
}

// Subscribe returns a subscription to the changes of tables. Its first
// Next reports lost: the subscriber starts from a full read of the
// snapshot. Close it when done.
func (s *State) Subscribe(tables ...string) *Subscription {
	sub := &Subscription{l: s.changes, s: s, tables: map[string]bool{}, wake: make(chan struct{}, 1), lost: true}
	for _, t := range tables {
		sub.tables[t] = true
	}
	s.changes.mu.Lock()
	s.changes.subs[sub] = struct{}{}
	s.changes.mu.Unlock()
	sub.wake <- struct{}{}
	return sub
}

func (sub *Subscription) touches(cs memdb.Changes) bool {
	for _, c := range cs {
		if sub.tables[c.Table] {
			return true
		}
	}
	return false
}

// Changed returns a channel that receives when a commit changed one of the
// subscribed tables since the last Next (or a Next is due for another
// reason, such as the first).
func (sub *Subscription) Changed() <-chan struct{} { return sub.wake }

// Next returns the changes of the subscribed tables since the last call,
// in commit order, and a snapshot that includes them (and maybe later
// commits, whose changes the next call returns again: processing a change
// must be idempotent). lost reports that changes were dropped before they
// were read (the first call, or the subscriber fell DefaultChangeLogLimit
// changes behind): the caller must then read the whole snapshot.
func (sub *Subscription) Next() (changes []Change, sn *Snapshot, lost bool) {
	sub.l.mu.Lock()
	changes, lost = sub.queue, sub.lost
	sub.queue, sub.lost = nil, false
	sub.l.mu.Unlock()
	if lost {
		changes = nil // the snapshot has everything
	}
	return changes, sub.s.Snapshot(), lost
}

// Close ends the subscription.
func (sub *Subscription) Close() {
	sub.l.mu.Lock()
	defer sub.l.mu.Unlock()
	delete(sub.l.subs, sub)
	sub.queue = nil
}

// IPCachePrefixes returns the prefixes of the ipcache entries a change of
// the ipcache table added, changed or removed (a host entry block reports
// only the entries that differ). Other tables' changes have none.
func IPCachePrefixes(c Change) []netip.Prefix {
	if c.Table != TableIPCache {
		return nil
	}
	if e := ipRow(c.After); e != nil {
		return []netip.Prefix{e.Prefix}
	}
	if e := ipRow(c.Before); e != nil {
		return []netip.Prefix{e.Prefix}
	}
	before, _ := c.Before.(*ipBlock)
	after, _ := c.After.(*ipBlock)
	return blockDiff(before, after)
}

func ipRow(raw any) *IPCacheRow {
	e, _ := raw.(*IPCacheRow)
	return e
}

// blockDiff returns the host prefixes whose entry differs between two
// versions of a block (either may be nil); the groups, pages and chunks
// both versions share are equal (copy-on-write copies what it changes).
func blockDiff(before, after *ipBlock) []netip.Prefix {
	blk := after
	if blk == nil {
		blk = before
	}
	if blk == nil {
		return nil
	}
	var out []netip.Prefix
	for gi := range groupsPerBlock {
		var ga, gb *pageGroup
		if before != nil {
			ga = before.groups[gi]
		}
		if after != nil {
			gb = after.groups[gi]
		}
		if ga == gb {
			continue
		}
		for pi := range pagesPerGroup {
			var pa, pb *hostPage
			if ga != nil {
				pa = ga.pages[pi]
			}
			if gb != nil {
				pb = gb.pages[pi]
			}
			if pa != pb {
				out = pageDiff(out, blk, uint16(gi<<12|pi<<8), pa, pb)
			}
		}
	}
	return out
}

// pageDiff appends to out the host prefixes of blk whose entry differs
// between two versions of its page at hi (either may be nil).
func pageDiff(out []netip.Prefix, blk *ipBlock, hi uint16, before, after *hostPage) []netip.Prefix {
	for ci := range chunksPerPage {
		var pa, pb uint32
		var a, b []hostEntry
		if before != nil {
			pa, a = before.present[ci], before.chunks[ci]
		}
		if after != nil {
			pb, b = after.present[ci], after.chunks[ci]
		}
		if pa == pb && (pa == 0 || &a[0] == &b[0]) {
			continue // shared
		}
		i, j := 0, 0
		for m := pa | pb; m != 0; m &= m - 1 {
			bit := m & -m
			inA, inB := pa&bit != 0, pb&bit != 0
			if !inA || !inB || a[i] != b[j] {
				out = append(out, blk.hostPrefix(hi|uint16(ci<<chunkShift|bits.TrailingZeros32(m))))
			}
			if inA {
				i++
			}
			if inB {
				j++
			}
		}
	}
	return out
}

// TableWatcher wakes a consumer of some tables only when one of them
// changes (go-memdb's watch channel of each table's primary index):
// commits to other tables do not wake it, so a consumer of a few small
// tables does not wake on the churn of the large ones. It is owned by one
// goroutine.
type TableWatcher struct {
	s      *State
	tables []string
	last   chan struct{} // the merged channel of the last call, until closed
}

// WatchTables returns a watcher of tables.
func (s *State) WatchTables(tables ...string) *TableWatcher {
	return &TableWatcher{s: s, tables: tables}
}

// Changed returns a channel closed by the first commit after the call that
// changes one of the tables, or when ctx ends: the goroutine that waits for
// the change ends then too, so a consumer that stopped leaves none behind.
func (w *TableWatcher) Changed(ctx context.Context) <-chan struct{} {
	if w.last != nil {
		select {
		case <-w.last:
		default:
			return w.last // no table changed since: still the current one
		}
	}
	txn := w.s.db.Txn(false)
	cases := make([]reflect.SelectCase, 0, len(w.tables)+1)
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
	for _, t := range w.tables {
		it, err := txn.Get(t, IndexID)
		if err != nil {
			// A bad table name is a bug; wake on every commit rather
			// than never.
			return w.s.Changed()
		}
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(it.WatchCh())})
	}
	out := make(chan struct{})
	go func() { // one per watcher at a time; ends at the first change or with ctx
		defer close(out)
		reflect.Select(cases)
	}()
	w.last = out
	return out
}

// IdentityRow returns the row of identity id (nil if none). Rows are
// immutable: an unchanged identity is the same pointer in every snapshot.
func (sn *Snapshot) IdentityRow(id identity.NumericIdentity) *IdentityRow {
	return identityRow(sn.txn, id)
}

// EndpointRow returns the row of endpoint namespace/name (nil if none).
func (sn *Snapshot) EndpointRow(namespace, name string) *Endpoint {
	if namespace == "" || name == "" {
		return nil
	}
	r, _ := first[Endpoint](sn.txn, TableEndpoints, IndexID, namespace, name)
	return r
}
