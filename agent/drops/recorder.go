package drops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/clustermesh/clustermesh/bpf"
)

// Source is a reader of the datapath's events (*bpf.EventReader). Read
// blocks until an event arrives or ctx ends.
type Source interface {
	Read(ctx context.Context) (bpf.Event, error)
}

// Config of a Recorder.
type Config struct {
	// Capacity of the ring (DefaultCapacity if not positive).
	Capacity int
	// ClusterOf, optional, names the cluster of an identity ("" when
	// unknown). It is called twice per drop on Run's goroutine: it must be
	// cheap and must not block.
	ClusterOf func(identity uint32) string
	Log       *slog.Logger
}

// Recorder keeps the drops read from a Source in a Ring.
type Recorder struct {
	ring      *Ring
	clusterOf func(uint32) string
	log       *slog.Logger
}

// NewRecorder returns a Recorder with an empty ring.
func NewRecorder(cfg Config) *Recorder {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{ring: NewRing(cfg.Capacity), clusterOf: cfg.ClusterOf, log: log.With("component", "drops")}
}

// List returns the recorded drops q selects, oldest first, and the number
// of drops overwritten by newer ones.
func (r *Recorder) List(q Query) ([]Record, uint64) { return r.ring.List(q) }

// Run reads src until ctx ends, keeping every drop. It returns ctx's error,
// or the first read error other than a record that does not decode.
func (r *Recorder) Run(ctx context.Context, src Source) error {
	var invalid uint64
	for ctx.Err() == nil {
		ev, err := src.Read(ctx)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			if errors.Is(err, bpf.ErrInvalidEvent) {
				invalid++
				if invalid == 1 { // the same for every event: say it once
					r.log.Warn("skipping datapath events that do not decode (agent and loaded programs of different builds?)", "error", err)
				}
				continue
			}
			return fmt.Errorf("read datapath events: %w", err)
		}
		if ev.Verdict != bpf.Dropped {
			continue
		}
		r.ring.Add(r.record(ev))
	}
	return ctx.Err()
}

// record converts a drop event.
func (r *Recorder) record(ev bpf.Event) Record {
	rec := Record{
		Time: ev.Time, Direction: "egress", Reason: ev.Reason.String(), Src: ev.Src, Dst: ev.Dst,
		Protocol: ev.Proto, SrcIdentity: ev.SrcIdentity, DstIdentity: ev.DstIdentity, EndpointID: ev.EndpointID,
	}
	if ev.Ingress {
		rec.Direction = "ingress"
	}
	if r.clusterOf != nil {
		rec.SrcCluster, rec.DstCluster = r.clusterOf(ev.SrcIdentity), r.clusterOf(ev.DstIdentity)
	}
	return rec
}
