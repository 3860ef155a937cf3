package remote

import (
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rejections counts rejected remote entries per kind and reason, and logs
// them at most once per reason every logEvery.
type rejections struct {
	peer    string
	log     *slog.Logger
	metric  *prometheus.CounterVec // may be nil
	mu      sync.Mutex             // guards counts, lastLog
	counts  map[string]uint64
	lastLog map[string]time.Time
}

const logEvery = 10 * time.Second

func newRejections(peer string, log *slog.Logger, metric *prometheus.CounterVec) *rejections {
	return &rejections{peer: peer, log: log, metric: metric, counts: map[string]uint64{}, lastLog: map[string]time.Time{}}
}

func (r *rejections) reject(kind Kind, reason, key, detail string) {
	id := string(kind) + ": " + reason
	r.mu.Lock()
	r.counts[id]++
	now := time.Now()
	logIt := now.Sub(r.lastLog[id]) >= logEvery
	if logIt {
		r.lastLog[id] = now
	}
	n := r.counts[id]
	r.mu.Unlock()
	if r.metric != nil {
		r.metric.WithLabelValues(r.peer, string(kind), reason).Inc()
	}
	if logIt {
		r.log.Warn("rejected data from a remote cluster", "kind", kind, "reason", reason, "key", truncateN(key, 256), "detail", truncateN(detail, 512), "rejected_so_far", n)
	}
}

func (r *rejections) snapshot() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.counts)
}
