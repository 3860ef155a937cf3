package observe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

// DefaultWindow is how long a streamed flow is held to merge the agents'
// streams in time order.
const DefaultWindow = 250 * time.Millisecond

// Options of Run.
type Options struct {
	// Request is sent to every agent; its Last also bounds the merged
	// history.
	Request flowapi.Request
	Printer Printer
	// Warn receives, one line each, the agents that cannot be read and the
	// events they lost.
	Warn io.Writer
	// Window is how long a streamed flow waits for older ones of other
	// agents (DefaultWindow if not positive).
	Window time.Duration
}

// ErrNoAgent is returned when no agent could be read.
var ErrNoAgent = errors.New("no agent could be read")

// Run asks every agent of src, prints the flows in time order, and, with
// Request.Follow, goes on until ctx ends (then it returns nil).
func Run(ctx context.Context, src Source, opts Options) error {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	ctx, cancel := context.WithCancel(ctx)
	streams := src.Open(ctx, opts.Request)
	items := make(chan item)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // the readers stop with ctx
	live := 0
	for _, s := range streams {
		if s.Err != nil {
			fmt.Fprintf(opts.Warn, "# %s: %v\n", s.Node, s.Err)
			continue
		}
		live++
		wg.Go(func() { read(ctx, s, opts.Request.Follow, items) })
	}
	if live == 0 {
		return ErrNoAgent
	}
	m := &merge{opts: opts, merger: merger{window: opts.Window}, direct: live == 1,
		held: map[string]bool{}, lost: map[string]flowapi.Lost{}, last: map[string]flowapi.Status{}}
	return m.run(ctx, items, live)
}

// item is what a reader of one agent's stream hands over.
type item struct {
	node   string
	flow   *flowapi.Flow
	status *flowapi.Status
	// history marks the end of the agent's held flows (follow), done the
	// end of its stream (err: why it ended early).
	history, done bool
	err           error
}

// read decodes the lines of s until it ends or ctx does, then closes it.
// With follow, the second status line marks the end of the held flows.
func read(ctx context.Context, s Stream, follow bool, out chan<- item) {
	defer s.Body.Close()
	send := func(it item) bool {
		it.node = s.Node
		select {
		case out <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Body.Close() }) // unblocks Decode
	defer stop()
	dec := json.NewDecoder(s.Body)
	statuses := 0
	for {
		var l flowapi.Line
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				err = nil
			}
			if err != nil {
				err = fmt.Errorf("read the flows: %w", err)
			}
			send(item{done: true, err: err})
			return
		}
		switch {
		case l.Flow != nil:
			if !send(item{flow: l.Flow}) {
				return
			}
		case l.Status != nil:
			statuses++
			if !send(item{status: l.Status, history: follow && statuses == 2}) {
				return
			}
		}
	}
}

// merge is the state of Run's loop, which owns it.
type merge struct {
	opts   Options
	merger merger
	// direct: one agent, whose stream is in order: new flows are printed
	// as they come, without the window.
	direct  bool
	history []flowapi.Flow
	held    map[string]bool           // by node: all its held flows are in (follow)
	lost    map[string]flowapi.Lost   // by node, as last said
	last    map[string]flowapi.Status // by node
}

// run prints the agents' flows until every stream ended or ctx did. The
// held flows of every agent are merged whole (and cut to Request.Last)
// before any streamed flow is printed.
func (m *merge) run(ctx context.Context, items <-chan item, live int) error {
	follow := m.opts.Request.Follow
	waiting := live // agents whose held flows are not all in
	tick := time.NewTicker(m.opts.Window / 2)
	defer tick.Stop()
	for live > 0 {
		select {
		case <-ctx.Done():
			return m.flush(m.merger.drain())
		case now := <-tick.C:
			if waiting == 0 {
				if err := m.flush(m.merger.ready(now)); err != nil {
					return err
				}
			}
		case it := <-items:
			switch {
			case it.flow != nil && waiting > 0 && !follow:
				m.history = append(m.history, *it.flow)
			case it.flow != nil && waiting > 0 && !m.held[it.node]:
				m.history = append(m.history, *it.flow)
			case it.flow != nil && m.direct:
				if err := m.flush([]flowapi.Flow{*it.flow}); err != nil {
					return err
				}
			case it.flow != nil:
				m.merger.push(*it.flow)
			case it.status != nil:
				m.status(it.node, it.status)
				if it.history {
					m.held[it.node] = true
					if waiting--; waiting == 0 {
						if err := m.flush(mergeHistory(m.history, m.opts.Request.Last)); err != nil {
							return err
						}
						m.history = nil
					}
				}
			case it.done:
				live--
				if it.err != nil {
					fmt.Fprintf(m.opts.Warn, "# %s: %v\n", it.node, it.err)
				}
				if follow && !m.held[it.node] { // ended before its held flows did
					m.held[it.node] = true
					waiting--
				}
			}
		}
	}
	if !follow {
		if err := m.flush(mergeHistory(m.history, m.opts.Request.Last)); err != nil {
			return err
		}
		m.summary()
		return nil
	}
	if waiting > 0 {
		if err := m.flush(mergeHistory(m.history, m.opts.Request.Last)); err != nil {
			return err
		}
	}
	return m.flush(m.merger.drain())
}

// flush prints fs.
func (m *merge) flush(fs []flowapi.Flow) error {
	for i := range fs {
		if err := m.opts.Printer.Print(&fs[i]); err != nil {
			return fmt.Errorf("print: %w", err)
		}
	}
	if len(fs) > 0 {
		return m.opts.Printer.Flush()
	}
	return nil
}

// status says the events node lost since its last status line.
func (m *merge) status(node string, st *flowapi.Status) {
	m.last[node] = *st
	before, seen := m.lost[node]
	m.lost[node] = st.Lost
	if !seen {
		if st.Lost.Datapath > 0 || st.Lost.Undecodable > 0 {
			fmt.Fprintf(m.opts.Warn, "# %s: %d events lost in the datapath, %d undecodable since the agent started\n", node, st.Lost.Datapath, st.Lost.Undecodable)
		}
		return
	}
	if d := st.Lost.Datapath - before.Datapath; d > 0 {
		fmt.Fprintf(m.opts.Warn, "# %s: %d events lost in the datapath (the agent did not read its ring buffer fast enough)\n", node, d)
	}
	if d := st.Lost.Undecodable - before.Undecodable; d > 0 {
		fmt.Fprintf(m.opts.Warn, "# %s: %d events that do not decode (agent and datapath of different builds?)\n", node, d)
	}
	if d := st.Lost.Stream - before.Stream; d > 0 {
		fmt.Fprintf(m.opts.Warn, "# %s: %d flows skipped: this stream was read more slowly than they came (filter more, or raise --flows-capacity)\n", node, d)
	}
}

// summary says, after a query, how much older flows each agent no longer
// holds.
func (m *merge) summary() {
	for _, node := range slices.Sorted(maps.Keys(m.last)) {
		if st := m.last[node]; st.Lost.Overwritten > 0 {
			fmt.Fprintf(m.opts.Warn, "# %s: holds the last %d flows; %d older ones were overwritten (--flows-capacity)\n", node, st.Held, st.Lost.Overwritten)
		}
	}
}
