package kvstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/internal/backoff"
)

// WatchHandler receives a WatchStore's events, from one goroutine, in order.
type WatchHandler interface {
	// OnUpsert: key was created or changed.
	OnUpsert(key string, value []byte)
	// OnDelete: key is gone (deleted, or found missing at a relist).
	OnDelete(key string)
	// OnSynced: the initial list is complete. Called once.
	OnSynced()
}

// BatchHandler is optionally implemented by a WatchHandler that wants to
// know where etcd's batches end (after each list page and each watch
// response), for example to commit its own writes in one transaction.
type BatchHandler interface {
	OnBatchDone()
}

// WatchStoreConfig configures a WatchStore.
type WatchStoreConfig struct {
	// Prefix to mirror, e.g. "cilium/state/nodes/v1/c1/".
	Prefix string
	// SyncedKey, when set, is the exporter's synced marker: nothing is read
	// before it exists, so that the first list is the complete set.
	SyncedKey string
	// PageSize of list requests (default 5000 keys).
	PageSize int64
	// Keys, when set, packs the keys (without Prefix) that have a compact
	// form, so that the store holds less per key (see KeyCodec).
	Keys KeyCodec
	// RequestTimeout bounds each list request (default 30s).
	RequestTimeout time.Duration
	// Backoff between failed attempts.
	Backoff backoff.Backoff
	Logger  *slog.Logger
}

// WatchStoreStatus is a snapshot of a WatchStore's health.
type WatchStoreStatus struct {
	WaitingForMarker bool
	Synced           bool
	Entries          int
	// Lists counts full lists: the first, then one per relist.
	Lists         uint64
	LastError     string
	LastErrorTime time.Time
}

var (
	errCompacted      = errors.New("watch revision compacted")
	errClusterChanged = errors.New("etcd cluster ID changed: the server was replaced")
	errWatchClosed    = errors.New("watch channel closed")
)

// WatchStore mirrors a prefix of etcd into a handler: it lists the prefix at
// one revision, then watches from the next. Whenever the watch breaks
// (compaction, lost leader, replaced server) it lists again and reports keys
// that vanished meanwhile as deletes, so the handler never keeps a key the
// server no longer has and never misses or reorders an event for a key.
type WatchStore struct {
	cli *Client
	cfg WatchStoreConfig
	h   WatchHandler
	log *slog.Logger

	// known maps each key, without cfg.Prefix (one entry per key of a
	// large peer: the shorter the better, see keySet), to its mod
	// revision; owned by Run's goroutine.
	known     *keySet
	batchDone func()

	mu     sync.Mutex // guards status
	status WatchStoreStatus
}

// NewWatchStore returns a store; nothing is read before Run.
func NewWatchStore(cli *Client, cfg WatchStoreConfig, h WatchHandler) (*WatchStore, error) {
	if cfg.Prefix == "" {
		return nil, fmt.Errorf("%w: watch store needs a prefix", ErrInvalidConfig)
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 5000
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &WatchStore{cli: cli, cfg: cfg, h: h, log: log.With("prefix", cfg.Prefix), known: newKeySet(cfg.Keys, 0)}
	if b, ok := h.(BatchHandler); ok {
		w.batchDone = b.OnBatchDone
	} else {
		w.batchDone = func() {}
	}
	return w, nil
}

// Adopt makes w the successor of prev, a stopped store of the same prefix
// whose handler state w's handler keeps (for example the previous
// connection to the same peer): w's first list reports every key it finds
// and, as deleted, every key prev had reported that is gone. Without it, a
// key deleted while no store was running would never be reported deleted.
// Neither store may be running; prev must not be run again.
func (w *WatchStore) Adopt(prev *WatchStore) error {
	if prev.cfg.Prefix != w.cfg.Prefix {
		return fmt.Errorf("%w: a watch store of %q cannot adopt the keys of %q", ErrInvalidConfig, w.cfg.Prefix, prev.cfg.Prefix)
	}
	if prev.known == nil { // adopted already: nothing left to hand over
		return nil
	}
	// An impossible revision: the key is reported again even when its
	// revision looks unchanged (the server may have been replaced).
	prev.known.each(func(rel string) { w.known.set(rel, noRev) })
	prev.known = nil
	return nil
}

// Status returns a snapshot of the store's health.
func (w *WatchStore) Status() WatchStoreStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// Run mirrors the prefix until ctx ends, reconnecting with backoff.
func (w *WatchStore) Run(ctx context.Context) error {
	bo := w.cfg.Backoff
	markerSeen := w.cfg.SyncedKey == ""
	synced := false
	for ctx.Err() == nil {
		if !markerSeen {
			w.setStatus(func(s *WatchStoreStatus) { s.WaitingForMarker = true })
			if err := w.waitMarker(ctx); err != nil {
				w.fail(ctx, &bo, err)
				continue
			}
			markerSeen = true
			w.setStatus(func(s *WatchStoreStatus) { s.WaitingForMarker = false })
		}
		res, err := w.list(ctx)
		if err != nil {
			w.fail(ctx, &bo, err)
			continue
		}
		bo.Reset()
		if !synced {
			synced = true
			w.h.OnSynced()
			w.setStatus(func(s *WatchStoreStatus) { s.Synced = true })
		}
		err = w.watch(ctx, res)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errCompacted) {
			w.log.Info("watch fell behind compaction, listing again")
			w.setStatus(func(s *WatchStoreStatus) { s.LastError, s.LastErrorTime = err.Error(), time.Now() })
			continue
		}
		w.fail(ctx, &bo, err)
	}
	return ctx.Err()
}

func (w *WatchStore) fail(ctx context.Context, bo *backoff.Backoff, err error) {
	if ctx.Err() != nil {
		return
	}
	w.log.Warn("etcd read failed, retrying", "error", err)
	w.setStatus(func(s *WatchStoreStatus) { s.LastError, s.LastErrorTime = err.Error(), time.Now() })
	_ = bo.Wait(ctx)
}

func (w *WatchStore) setStatus(f func(*WatchStoreStatus)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(&w.status)
}

// waitMarker returns once the synced marker exists.
func (w *WatchStore) waitMarker(ctx context.Context) error {
	if err := w.cli.Limit(ctx); err != nil {
		return err
	}
	gctx, gcancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	resp, err := w.cli.Etcd().Get(gctx, w.cfg.SyncedKey)
	gcancel()
	if err != nil {
		return fmt.Errorf("read synced marker %s: %w", w.cfg.SyncedKey, err)
	}
	if len(resp.Kvs) > 0 {
		return nil
	}
	w.log.Info("waiting for the exporter's synced marker", "key", w.cfg.SyncedKey)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range w.cli.Etcd().Watch(wctx, w.cfg.SyncedKey, clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch synced marker %s: %w", w.cfg.SyncedKey, err)
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypePut {
				return nil
			}
		}
	}
	return fmt.Errorf("watch synced marker %s: %w", w.cfg.SyncedKey, errWatchClosed)
}

// list reads the whole prefix at one revision, reports what is new or
// changed, and reports known keys that are missing as deleted.
func (w *WatchStore) list(ctx context.Context) (listResult, error) {
	// The keys read, to find the known ones that are gone: none when
	// nothing is known (the first list).
	var seen *keySet
	if w.known.len() > 0 {
		seen = newKeySet(w.cfg.Keys, w.known.len())
	}
	res, err := listRange(ctx, w.cli, w.cfg.Prefix, clientv3.GetPrefixRangeEnd(w.cfg.Prefix), 0, w.cfg.PageSize, w.cfg.RequestTimeout, false,
		func(k, v []byte, modRev int64) {
			p := w.cfg.Prefix
			if len(k) < len(p) || string(k[:len(p)]) != p { // outside the range read: cannot happen
				return
			}
			rel := string(k[len(p):])
			if seen != nil {
				seen.set(rel, 1)
			}
			if old, ok := w.known.get(rel); ok && old == modRev {
				return
			}
			w.known.set(rel, modRev)
			w.h.OnUpsert(string(k), v)
		})
	if err != nil {
		// Keys read so far were reported; the next list reconciles the rest.
		w.batchDone()
		return res, err
	}
	if seen != nil {
		w.known.sweep(seen, func(rel string) { w.h.OnDelete(w.cfg.Prefix + rel) })
	}
	w.batchDone()
	n := w.known.len()
	w.setStatus(func(s *WatchStoreStatus) { s.Lists++; s.Entries = n })
	return res, nil
}

func (w *WatchStore) watch(ctx context.Context, res listResult) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.cli.Etcd().Watch(wctx, w.cfg.Prefix, clientv3.WithPrefix(), clientv3.WithRev(res.rev+1))
	for wr := range wch {
		if wr.CompactRevision != 0 {
			return fmt.Errorf("%w at %d", errCompacted, wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", w.cfg.Prefix, err)
		}
		if res.clusterID != 0 && wr.Header.ClusterId != 0 && wr.Header.ClusterId != res.clusterID {
			return errClusterChanged
		}
		for _, ev := range wr.Events {
			key := string(ev.Kv.Key)
			if !strings.HasPrefix(key, w.cfg.Prefix) {
				continue
			}
			switch ev.Type {
			case clientv3.EventTypePut:
				w.known.set(key[len(w.cfg.Prefix):], ev.Kv.ModRevision)
				w.h.OnUpsert(key, ev.Kv.Value)
			case clientv3.EventTypeDelete:
				if w.known.del(key[len(w.cfg.Prefix):]) {
					w.h.OnDelete(key)
				}
			}
		}
		w.batchDone()
		n := w.known.len()
		w.setStatus(func(s *WatchStoreStatus) { s.Entries = n })
	}
	return errWatchClosed
}
