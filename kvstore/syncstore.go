package kvstore

import (
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
// written again after its lease was lost only once the keys lost with it are
// back. (Keys lost on another lease while the marker stays are written again
// as soon as possible; the marker vouches for the initial export.)
type SyncStore struct {
	cli *Client
	cfg SyncStoreConfig
	log *slog.Logger

	wake chan struct{} // signalled when keys are queued

	mu           sync.Mutex // guards everything below
	leases       *leaseManager
	st           syncState
	syncedWanted bool
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
	s := &SyncStore{cli: cli, cfg: cfg, log: log.With("prefix", cfg.Prefix), wake: make(chan struct{}, 1)}
	s.st = syncState{entries: map[string]*entry{}, signal: s.signal}
	return s, nil
}

func (s *SyncStore) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Upsert makes key hold value. The key must be under the store's prefix.
func (s *SyncStore) Upsert(key string, value []byte) error {
	if !strings.HasPrefix(key, s.cfg.Prefix) || len(key) == len(s.cfg.Prefix) {
		return fmt.Errorf("upsert %q: key is not under the store's prefix %q", key, s.cfg.Prefix)
	}
	if len(value) == 0 {
		return fmt.Errorf("upsert %q: empty value", key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.set(key, string(value))
	return nil
}

// Delete makes key absent.
func (s *SyncStore) Delete(key string) {
	if !strings.HasPrefix(key, s.cfg.Prefix) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.set(key, "")
}

// Synced declares that every key of the initial set has been upserted.
func (s *SyncStore) Synced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.syncedWanted {
		return
	}
	s.syncedWanted = true
	s.st.markAllPending()
	s.queueStaleLocked()
	s.maybeMarkerLocked()
}

// Status returns a snapshot of the store's health.
func (s *SyncStore) Status() SyncStoreStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Queued = s.st.queuedN + s.st.inflightN
	st.Synced = s.markerOnLocked()
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

	var existing map[string]struct{}
	if !s.cfg.KeepStale {
		bo := s.cfg.Backoff
		for {
			keys, err := s.listExisting(ctx)
			if err == nil {
				existing = keys
				break
			}
			s.recordError(err)
			if werr := bo.Wait(ctx); werr != nil {
				return werr
			}
		}
	}
	s.mu.Lock()
	s.existing, s.listed = existing, true
	s.queueStaleLocked()
	s.maybeMarkerLocked()
	s.mu.Unlock()

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

// queueStaleLocked queues the deletion of keys found at start that nobody
// upserted, once both the list and Synced happened.
func (s *SyncStore) queueStaleLocked() {
	if !s.listed || !s.syncedWanted || s.existing == nil {
		return
	}
	s.st.markStale(s.existing)
	s.existing = nil
}

func (s *SyncStore) markerOnLocked() bool {
	e := s.st.entries[s.cfg.SyncedKey]
	return s.cfg.SyncedKey != "" && e != nil && e.inEtcd && e.desired != ""
}

// maybeMarkerLocked queues the synced marker when everything it vouches for
// is in etcd.
func (s *SyncStore) maybeMarkerLocked() {
	if s.cfg.SyncedKey == "" || !s.syncedWanted || !s.listed || s.existing != nil || s.st.pendingN > 0 {
		return
	}
	if e := s.st.entries[s.cfg.SyncedKey]; e != nil && e.desired != "" {
		return // queued, in flight or written
	}
	s.st.set(s.cfg.SyncedKey, markerValue(time.Now()))
}

func (s *SyncStore) onLeaseLost(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.Warn("etcd lease lost, writing its keys again", "keys", len(keys))
	if e := s.st.entries[s.cfg.SyncedKey]; e != nil {
		for _, k := range keys {
			if k == s.cfg.SyncedKey {
				e.desired = "" // re-written by maybeMarkerLocked once the rest is back
			}
		}
	}
	s.st.lost(keys)
	s.maybeMarkerLocked()
}

type op struct {
	key    string
	value  string
	delete bool
}

// next blocks until keys are queued and takes a batch of them.
func (s *SyncStore) next(ctx context.Context) ([]op, error) {
	for {
		s.mu.Lock()
		batch := s.st.take(s.cfg.BatchSize, s.cfg.BatchBytes)
		if len(batch) == 0 {
			s.maybeMarkerLocked() // skipped keys may have been the last pending ones
			batch = s.st.take(s.cfg.BatchSize, s.cfg.BatchBytes)
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
	for _, o := range batch {
		if o.delete {
			ops = append(ops, clientv3.OpDelete(o.key))
			continue
		}
		id, err := s.leases.Attach(ctx, o.key)
		if err != nil {
			return err
		}
		if len(leases) == 0 || leases[len(leases)-1] != id {
			leases = append(leases, id)
		}
		ops = append(ops, clientv3.OpPut(o.key, o.value, clientv3.WithLease(id)))
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

// done records the outcome of a batch.
func (s *SyncStore) done(batch []op, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wasOn := s.markerOnLocked()
	s.st.done(batch, err == nil, s.leases.Detach)
	if err != nil {
		s.status.Failures++
	} else {
		s.status.Writes += uint64(len(batch))
	}
	if !wasOn && s.markerOnLocked() {
		s.log.Info("initial export written, synced marker set", "key", s.cfg.SyncedKey)
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
