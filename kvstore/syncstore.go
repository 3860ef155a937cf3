package kvstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/internal/backoff"
)

// SyncStoreConfig configures a SyncStore.
type SyncStoreConfig struct {
	// Prefix is the part of the keyspace the store owns, e.g.
	// "cilium/state/nodes/v1/c1/". Every key written is under it; keys found
	// under it at start and not upserted before Synced are deleted.
	Prefix string
	// SyncedKey is the marker written (value: RFC3339 time) once the whole
	// initial set is in etcd, e.g. "cilium/synced/c1/cilium/state/nodes/v1".
	// Empty: no marker.
	SyncedKey string
	// KeepStale keeps keys found under Prefix at start that were not
	// upserted (default: they are deleted once synced).
	KeepStale bool
	// LeaseTTL of the keys (default 15m); MaxKeysPerLease (default 1000).
	LeaseTTL        time.Duration
	MaxKeysPerLease int
	// Workers write in parallel (default 4), each up to BatchSize keys in one
	// transaction (default 64; etcd allows 128 operations per transaction)
	// and at most BatchBytes of values (default 1 MiB).
	Workers    int
	BatchSize  int
	BatchBytes int
	// RequestTimeout bounds each etcd request (default 10s): etcd's client
	// waits for a connection, so without it a down server blocks forever.
	RequestTimeout time.Duration
	// Backoff after a failed write (defaults of internal/backoff).
	Backoff backoff.Backoff
	Logger  *slog.Logger
}

// SyncStoreStatus is a snapshot of a SyncStore's health.
type SyncStoreStatus struct {
	// Queued is the number of keys not yet written as desired.
	Queued int
	// Synced is true while the synced marker is written.
	Synced bool
	// Leases is the number of live leases.
	Leases        int
	Writes        uint64
	Failures      uint64
	LastError     string
	LastErrorTime time.Time
}

// SyncStore keeps a prefix of etcd equal to a desired set of key/values:
// callers Upsert and Delete, and Run's workers write in the background,
// batched, rate-limited, retried with backoff, with keys attached to shared
// leases that are re-created if lost.
//
// Synced is called once every initial key was upserted; the marker is
// written only after all of them (and every stale deletion) are in etcd, and
// written again after a lost lease only once its keys are back.
type SyncStore struct {
	cli *Client
	cfg SyncStoreConfig
	log *slog.Logger

	wake chan struct{} // signalled when keys are queued

	mu      sync.Mutex // guards everything below
	leases  *leaseManager
	desired map[string][]byte
	// written holds the value last written for keys present in etcd.
	written  map[string][]byte
	queued   map[string]struct{}
	order    []string
	inflight map[string]struct{}
	// pending: keys that must be written before the marker is (re)written.
	pending      map[string]struct{}
	syncedWanted bool
	markerOn     bool
	// existing holds the keys found at start, until stale ones are queued.
	existing map[string]struct{}
	listed   bool
	status   SyncStoreStatus
}

// NewSyncStore returns a store; nothing is written before Run.
func NewSyncStore(cli *Client, cfg SyncStoreConfig) (*SyncStore, error) {
	if cfg.Prefix == "" || !strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("%w: sync store prefix %q must be non-empty and end in /", ErrInvalidConfig, cfg.Prefix)
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 15 * time.Minute
	}
	if cfg.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("%w: lease TTL %v is below etcd's minimum of 2s", ErrInvalidConfig, cfg.LeaseTTL)
	}
	if cfg.MaxKeysPerLease <= 0 {
		cfg.MaxKeysPerLease = 1000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.BatchSize <= 0 || cfg.BatchSize > 128 {
		cfg.BatchSize = 64
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 1 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SyncStore{
		cli: cli, cfg: cfg, log: log.With("prefix", cfg.Prefix),
		wake:     make(chan struct{}, 1),
		desired:  map[string][]byte{},
		written:  map[string][]byte{},
		queued:   map[string]struct{}{},
		inflight: map[string]struct{}{},
		pending:  map[string]struct{}{},
	}, nil
}

// Upsert makes key hold value. The key must be under the store's prefix.
// The store keeps its own copy of value.
func (s *SyncStore) Upsert(key string, value []byte) error {
	if !strings.HasPrefix(key, s.cfg.Prefix) || len(key) == len(s.cfg.Prefix) {
		return fmt.Errorf("upsert %q: key is not under the store's prefix %q", key, s.cfg.Prefix)
	}
	if len(value) == 0 {
		return fmt.Errorf("upsert %q: empty value", key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.desired[key]; ok && bytes.Equal(old, value) {
		return nil
	}
	s.desired[key] = bytes.Clone(value)
	s.enqueueLocked(key)
	return nil
}

// Delete makes key absent.
func (s *SyncStore) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.desired[key]; !ok {
		return
	}
	delete(s.desired, key)
	s.enqueueLocked(key)
}

// Synced declares that every key of the initial set has been upserted.
func (s *SyncStore) Synced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.syncedWanted {
		return
	}
	s.syncedWanted = true
	for k := range s.queued {
		s.pending[k] = struct{}{}
	}
	for k := range s.inflight {
		s.pending[k] = struct{}{}
	}
	s.queueStaleLocked()
	s.maybeMarkerLocked()
}

// Status returns a snapshot of the store's health.
func (s *SyncStore) Status() SyncStoreStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Queued = len(s.queued) + len(s.inflight)
	st.Synced = s.markerOn
	if s.leases != nil {
		st.Leases = s.leases.Count()
	}
	return st
}

// Run lists what the prefix holds, then writes until ctx ends. Keys stay in
// etcd after Run returns; they expire with their leases unless another
// instance writes them again.
func (s *SyncStore) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.leases != nil {
		s.mu.Unlock()
		return errors.New("sync store: Run called twice")
	}
	s.leases = newLeaseManager(ctx, s.cli.Etcd(), s.cfg.LeaseTTL, s.cfg.MaxKeysPerLease, s.onLeaseLost)
	s.mu.Unlock()
	defer s.leases.Wait()

	if !s.cfg.KeepStale {
		bo := s.cfg.Backoff
		for {
			keys, err := s.listExisting(ctx)
			if err == nil {
				s.mu.Lock()
				s.existing, s.listed = keys, true
				s.queueStaleLocked()
				s.maybeMarkerLocked()
				s.mu.Unlock()
				break
			}
			s.recordError(err)
			if werr := bo.Wait(ctx); werr != nil {
				return werr
			}
		}
	} else {
		s.mu.Lock()
		s.listed = true
		s.maybeMarkerLocked()
		s.mu.Unlock()
	}

	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() { s.worker(ctx) })
	}
	wg.Wait()
	return ctx.Err()
}

func (s *SyncStore) listExisting(ctx context.Context) (map[string]struct{}, error) {
	keys := map[string]struct{}{}
	end := clientv3.GetPrefixRangeEnd(s.cfg.Prefix)
	_, err := listRange(ctx, s.cli, s.cfg.Prefix, end, 0, 10000, s.cfg.RequestTimeout, true, func(kvKey, _ []byte, _ int64) {
		keys[string(kvKey)] = struct{}{}
	})
	if err != nil {
		return nil, fmt.Errorf("list existing keys under %s: %w", s.cfg.Prefix, err)
	}
	return keys, nil
}

// enqueueLocked marks key for reconciliation.
func (s *SyncStore) enqueueLocked(key string) {
	if _, ok := s.queued[key]; ok {
		return
	}
	s.queued[key] = struct{}{}
	s.order = append(s.order, key)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// queueStaleLocked queues the deletion of keys found at start that nobody
// upserted, once both the list and Synced happened.
func (s *SyncStore) queueStaleLocked() {
	if !s.listed || !s.syncedWanted || s.existing == nil {
		return
	}
	for k := range s.existing {
		if _, ok := s.desired[k]; !ok {
			s.written[k] = nil // present in etcd: the delete must be sent
			s.pending[k] = struct{}{}
			s.enqueueLocked(k)
		}
	}
	s.existing = nil
}

// maybeMarkerLocked queues the synced marker when everything it vouches for
// is in etcd.
func (s *SyncStore) maybeMarkerLocked() {
	if s.cfg.SyncedKey == "" || !s.syncedWanted || !s.listed || s.existing != nil || len(s.pending) > 0 || s.markerOn {
		return
	}
	if _, ok := s.desired[s.cfg.SyncedKey]; ok {
		return // already queued
	}
	s.desired[s.cfg.SyncedKey] = []byte(time.Now().UTC().Format(time.RFC3339))
	s.enqueueLocked(s.cfg.SyncedKey)
}

func (s *SyncStore) onLeaseLost(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.Warn("etcd lease lost, writing its keys again", "keys", len(keys))
	for _, k := range keys {
		delete(s.written, k)
		if k == s.cfg.SyncedKey {
			s.markerOn = false
			delete(s.desired, k)
			continue
		}
		if _, ok := s.desired[k]; ok {
			s.pending[k] = struct{}{}
			s.enqueueLocked(k)
		}
	}
	s.maybeMarkerLocked()
}

type op struct {
	key   string
	value []byte // nil: delete
	lease clientv3.LeaseID
}

// next blocks until keys are queued and takes a batch of them.
func (s *SyncStore) next(ctx context.Context) ([]op, error) {
	for {
		s.mu.Lock()
		var batch []op
		size := 0
		rest := s.order[:0]
		for i, k := range s.order {
			if _, ok := s.queued[k]; !ok {
				continue // stale order entry
			}
			_, busy := s.inflight[k]
			if busy || len(batch) >= s.cfg.BatchSize || (len(batch) > 0 && size+len(s.desired[k]) > s.cfg.BatchBytes) {
				rest = append(rest, s.order[i])
				continue
			}
			delete(s.queued, k)
			v, present := s.desired[k]
			w, wasWritten := s.written[k]
			if present && wasWritten && bytes.Equal(v, w) {
				continue // already in etcd as desired
			}
			if !present && !wasWritten {
				continue // never written: nothing to delete
			}
			s.inflight[k] = struct{}{}
			size += len(v)
			batch = append(batch, op{key: k, value: v})
		}
		s.order = rest
		if len(s.queued) > 0 {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		if len(batch) == 0 {
			// Keys skipped above may have been the last pending ones.
			s.maybeMarkerLocked()
		}
		s.mu.Unlock()
		if len(batch) > 0 {
			return batch, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.wake:
		}
	}
}

func (s *SyncStore) worker(ctx context.Context) {
	bo := s.cfg.Backoff
	for {
		batch, err := s.next(ctx)
		if err != nil {
			return
		}
		err = s.write(ctx, batch)
		s.done(batch, err)
		if err == nil {
			bo.Reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		s.recordError(err)
		if bo.Wait(ctx) != nil {
			return
		}
	}
}

func (s *SyncStore) write(ctx context.Context, batch []op) error {
	if err := s.cli.Limit(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	ops := make([]clientv3.Op, 0, len(batch))
	var leases []clientv3.LeaseID
	for i := range batch {
		o := &batch[i]
		if o.value == nil {
			ops = append(ops, clientv3.OpDelete(o.key))
			continue
		}
		id, err := s.leases.Attach(ctx, o.key)
		if err != nil {
			return err
		}
		o.lease = id
		if len(leases) == 0 || leases[len(leases)-1] != id {
			leases = append(leases, id)
		}
		ops = append(ops, clientv3.OpPut(o.key, string(o.value), clientv3.WithLease(id)))
	}
	_, err := s.cli.Etcd().Txn(ctx).Then(ops...).Commit()
	if err == nil {
		return nil
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		if cerr := s.leases.CheckLost(ctx, leases); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	return fmt.Errorf("write %d keys under %s: %w", len(batch), s.cfg.Prefix, err)
}

// done records the outcome of a batch and requeues what must be written again.
func (s *SyncStore) done(batch []op, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range batch {
		delete(s.inflight, o.key)
		if err != nil {
			s.enqueueLocked(o.key)
			continue
		}
		s.status.Writes++
		if o.value == nil {
			delete(s.written, o.key)
			s.leases.Detach(o.key)
		} else {
			s.written[o.key] = o.value
		}
		if o.key == s.cfg.SyncedKey && o.value != nil {
			s.markerOn = true
			s.log.Info("initial export written, synced marker set", "key", o.key)
		}
		delete(s.pending, o.key)
		if v, ok := s.desired[o.key]; ok != (o.value != nil) || !bytes.Equal(v, o.value) {
			s.enqueueLocked(o.key) // changed while in flight
		}
	}
	if err != nil {
		s.status.Failures++
	}
	s.maybeMarkerLocked()
}

func (s *SyncStore) recordError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.LastError = err.Error()
	s.status.LastErrorTime = time.Now()
	s.log.Warn("etcd write failed, retrying", "error", err)
}
