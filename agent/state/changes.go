package state

import (
	"net/netip"
	"reflect"
	"sync"

	"github.com/hashicorp/go-memdb"

	"github.com/clustermesh/clustermesh/identity"
)

// Change is one row's net change in a commit, as go-memdb's change tracking
// reports it: Before is nil for an insert, After is nil for a delete. Rows
// are the tables' own (*IPCacheEntry, *NodeRow, ...; the ipcache table's
// host entries come as their *ipBlock: use IPCachePrefixes). Like every
// row, they must not be modified.
type Change struct {
	Table         string
	Before, After any
}

// DefaultChangeLogLimit bounds the changes kept for subscribers that fall
// behind; one that falls further behind loses them and resynchronises.
const DefaultChangeLogLimit = 1 << 18

// changeLog keeps the changes of recent commits until every subscriber has
// read them. It is appended to by State.Update, under the write lock
// go-memdb holds, and read by subscribers.
type changeLog struct {
	mu    sync.Mutex
	first uint64 // sequence number of log[0]
	log   []Change
	limit int
	subs  map[*Subscription]struct{}
	// wanted counts the subscriptions of each table.
	wanted map[string]int
}

func newChangeLog(limit int) *changeLog {
	return &changeLog{limit: limit, subs: map[*Subscription]struct{}{}, wanted: map[string]int{}}
}

// append records the changes of one commit and wakes the subscribers of
// the tables it touched.
func (l *changeLog) append(cs memdb.Changes) {
	if len(cs) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.subs) == 0 {
		l.first += uint64(len(l.log))
		l.log = l.log[:0]
		return
	}
	for _, c := range cs {
		if l.wanted[c.Table] > 0 { // kept only for the tables someone reads
			l.log = append(l.log, Change{Table: c.Table, Before: c.Before, After: c.After})
		}
	}
	for sub := range l.subs {
		if sub.touches(cs) {
			select {
			case sub.wake <- struct{}{}:
			default:
			}
		}
	}
	if over := len(l.log) - l.limit; over > 0 {
		l.trim(l.first+uint64(over), true)
	}
}

// trim drops the changes before seq; subscribers that had not read them
// lose them. Unless forced, it waits until they are half the log, so that
// the copy it makes is paid once per as many changes as it keeps.
func (l *changeLog) trim(seq uint64, force bool) {
	if seq <= l.first {
		return
	}
	n := int(seq - l.first)
	if !force && n < len(l.log)/2 {
		return
	}
	l.log = append(l.log[:0:0], l.log[n:]...)
	l.first = seq
	for sub := range l.subs {
		if sub.next < seq {
			sub.next, sub.lost = seq, true
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
	next   uint64
	lost   bool
}

// Subscribe returns a subscription to the changes of tables. Its first
// Next reports lost: the subscriber starts from a full read of the
// snapshot. Close it when done, or the changes it has not read are kept
// (up to the log's limit).
func (s *State) Subscribe(tables ...string) *Subscription {
	sub := &Subscription{l: s.changes, s: s, tables: map[string]bool{}, wake: make(chan struct{}, 1), lost: true}
	for _, t := range tables {
		sub.tables[t] = true
	}
	s.changes.mu.Lock()
	sub.next = s.changes.first + uint64(len(s.changes.log))
	s.changes.subs[sub] = struct{}{}
	for t := range sub.tables {
		s.changes.wanted[t]++
	}
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
	l := sub.l
	l.mu.Lock()
	end := l.first + uint64(len(l.log))
	for _, c := range l.log[sub.next-l.first:] {
		if sub.tables[c.Table] {
			changes = append(changes, c)
		}
	}
	sub.next, lost, sub.lost = end, sub.lost, false
	// Free what every subscriber has read.
	min := end
	for other := range l.subs {
		min = minSeq(min, other.next)
	}
	l.trim(min, false)
	l.mu.Unlock()
	return changes, sub.s.Snapshot(), lost
}

// Close ends the subscription.
func (sub *Subscription) Close() {
	sub.l.mu.Lock()
	defer sub.l.mu.Unlock()
	if _, ok := sub.l.subs[sub]; !ok {
		return
	}
	delete(sub.l.subs, sub)
	for t := range sub.tables {
		sub.l.wanted[t]--
	}
}

func minSeq(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
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
// versions of a block (either may be nil); both are sorted by last byte.
func blockDiff(before, after *ipBlock) []netip.Prefix {
	var a, b []hostEntry
	var blk *ipBlock
	if before != nil {
		a, blk = before.entries, before
	}
	if after != nil {
		b, blk = after.entries, after
	}
	if blk == nil {
		return nil
	}
	var out []netip.Prefix
	add := func(last byte) { out = append(out, blk.hostPrefix(last)) }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i].last < b[j].last:
			add(a[i].last)
			i++
		case i == len(a) || b[j].last < a[i].last:
			add(b[j].last)
			j++
		default:
			if a[i] != b[j] {
				add(a[i].last)
			}
			i++
			j++
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
// changes one of the tables.
func (w *TableWatcher) Changed() <-chan struct{} {
	if w.last != nil {
		select {
		case <-w.last:
		default:
			return w.last // no table changed since: still the current one
		}
	}
	txn := w.s.db.Txn(false)
	cases := make([]reflect.SelectCase, 0, len(w.tables))
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
	go func() { // one per watcher at a time; ends at the first change
		defer close(out)
		reflect.Select(cases)
	}()
	w.last = out
	return out
}

// IdentityRow returns the row of identity id (nil if none). Rows are
// immutable: an unchanged identity is the same pointer in every snapshot.
func (sn *Snapshot) IdentityRow(id identity.NumericIdentity) *IdentityRow {
	r, _ := first[IdentityRow](sn.txn, TableIdentities, IndexID, id)
	return r
}

// EndpointRow returns the row of endpoint namespace/name (nil if none).
func (sn *Snapshot) EndpointRow(namespace, name string) *Endpoint {
	if namespace == "" || name == "" {
		return nil
	}
	r, _ := first[Endpoint](sn.txn, TableEndpoints, IndexID, namespace, name)
	return r
}
