package flows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/bpf"
)

// Source is a reader of the datapath's events (*bpf.EventReader). Read
// blocks until an event arrives or ctx ends.
type Source interface {
	Read(ctx context.Context) (bpf.Event, error)
}

// Config of a Recorder.
type Config struct {
	// Node is this node's name, in every flow.
	Node string
	// Capacity of the ring (DefaultCapacity if not positive).
	Capacity int
	// Resolver, optional, names both ends of each flow; without it they
	// have only their address, port and identity.
	Resolver Resolver
	// DatapathLost, optional, returns how many events the datapath could
	// not report (bpf.Datapath.EventsLost).
	DatapathLost func() (uint64, error)
	Log          *slog.Logger
}

// Recorder keeps the flows of the events read from a Source in a Ring.
type Recorder struct {
	node         string
	ring         *Ring
	resolver     Resolver
	datapathLost func() (uint64, error)
	log          *slog.Logger
	undecodable  atomic.Uint64
	metrics      *metrics
}

// NewRecorder returns a Recorder with an empty ring.
func NewRecorder(cfg Config) *Recorder {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{node: cfg.Node, ring: NewRing(cfg.Capacity), resolver: cfg.Resolver, datapathLost: cfg.DatapathLost,
		log: log.With("component", "flows")}
	r.metrics = newMetrics(r)
	return r
}

// Ring returns the ring of flows, for readers.
func (r *Recorder) Ring() *Ring { return r.ring }

// Status returns the counts of the record of flows.
func (r *Recorder) Status() flowapi.Status {
	st := r.ring.Stats()
	return flowapi.Status{Node: r.node, Time: time.Now(), Capacity: st.Capacity, Held: st.Held, Seen: st.Added,
		Lost: flowapi.Lost{Datapath: r.DatapathLost(), Undecodable: r.undecodable.Load(), Overwritten: st.Overwritten}}
}

// DatapathLost returns the number of events the datapath could not report
// (0 when it cannot tell).
func (r *Recorder) DatapathLost() uint64 {
	if r.datapathLost == nil {
		return 0
	}
	n, err := r.datapathLost()
	if err != nil {
		return 0
	}
	return n
}

// Run reads src until ctx ends, recording every event as a flow. It
// returns ctx's error, or the first read error other than an event that
// does not decode.
func (r *Recorder) Run(ctx context.Context, src Source) error {
	var f flowapi.Flow
	for ctx.Err() == nil {
		ev, err := src.Read(ctx)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			if errors.Is(err, bpf.ErrInvalidEvent) {
				if r.undecodable.Add(1) == 1 { // the same for every event: say it once
					r.log.Warn("skipping datapath events that do not decode (agent and loaded programs of different builds?)", "error", err)
				}
				continue
			}
			return fmt.Errorf("read datapath events: %w", err)
		}
		r.flow(&ev, &f)
		r.metrics.count(&f)
		r.ring.Add(&f)
	}
	return ctx.Err()
}

// flow converts ev into f.
func (r *Recorder) flow(ev *bpf.Event, f *flowapi.Flow) {
	*f = flowapi.Flow{
		Time: ev.Time, Node: r.node, Direction: flowapi.DirectionEgress, Verdict: flowapi.VerdictForwarded,
		Reason: ev.Reason.String(), Protocol: flowapi.Protocol(ev.Proto), IsReply: ev.Reply,
		EndpointID: ev.EndpointID, Bytes: ev.Length,
		Src: flowapi.Endpoint{IP: ev.Src.Addr(), Port: ev.Src.Port(), Identity: ev.SrcIdentity},
		Dst: flowapi.Endpoint{IP: ev.Dst.Addr(), Port: ev.Dst.Port(), Identity: ev.DstIdentity},
	}
	if ev.Ingress {
		f.Direction = flowapi.DirectionIngress
	}
	if ev.Verdict == bpf.Dropped {
		f.Verdict = flowapi.VerdictDropped
	}
	if ev.Proto == bpf.ProtoTCP {
		f.TCPFlags = flowapi.TCPFlags(ev.TCPFlags)
	}
	if r.resolver != nil {
		f.Src = r.resolver.Resolve(ev.Src.Addr(), ev.SrcIdentity)
		f.Src.Port = ev.Src.Port()
		f.Dst = r.resolver.Resolve(ev.Dst.Addr(), ev.DstIdentity)
		f.Dst.Port = ev.Dst.Port()
	}
	if ev.Frontend.IsValid() {
		if r.resolver != nil {
			f.Service = r.resolver.Service(ev.Frontend, ev.Proto, &f.Dst)
		} else {
			f.Service = &flowapi.ServiceTranslation{Frontend: ev.Frontend, Backend: ev.Dst}
		}
	}
}
