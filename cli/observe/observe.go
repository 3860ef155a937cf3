package observe

import (
	"bufio"
	"bytes"
	"context"
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
	free := make(chan []flowapi.Flow, 2*len(streams)+1) // batches handed back
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // the readers stop with ctx
	live := 0
	for _, s := range streams {
		if s.Err != nil {
			fmt.Fprintf(opts.Warn, "# %s: %v\n", s.Node, s.Err)
			continue
		}
		live++
		wg.Go(func() { read(ctx, s, opts.Request.Follow, items, free) })
	}
	if live == 0 {
		return ErrNoAgent
	}
	m := &merge{opts: opts, merger: merger{window: opts.Window}, direct: live == 1,
		held: map[string]bool{}, lost: map[string]flowapi.Lost{}, last: map[string]flowapi.Status{}}
	err := m.run(ctx, items, free, live)
	if ferr := opts.Printer.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("print: %w", ferr)
	}
	return err
}

// item is what a reader of one agent's stream hands over.
type item struct {
	node string
	// flows are the flows read in a row, in the agent's order; the
	// receiver hands the slice back through free once done with it.
	flows  []flowapi.Flow
	status *flowapi.Status
	// history marks the end of the agent's held flows (follow), done the
	// end of its stream (err: why it ended early).
	history, done bool
	err           error
}

// Reading the agents' streams.
const (
	// maxBatch bounds the flows of one item.
	maxBatch = 256
	// maxLine bounds a line of an agent's answer.
	maxLine = 16 << 20
	// readBuffer is the size of a stream's read buffer.
	readBuffer = 64 << 10
)

// read decodes the lines of s until it ends or ctx does, then closes it.
// With follow, the second status line marks the end of the held flows.
// Flows are handed over in batches of those read in a row: a batch is sent
// as soon as no more of the stream is at hand (so a flow waits for no
// other), or when it holds maxBatch flows. Batches come from free when it
// has one.
func read(ctx context.Context, s Stream, follow bool, out chan<- item, free chan []flowapi.Flow) {
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
	stop := context.AfterFunc(ctx, func() { _ = s.Body.Close() }) // unblocks a read
	defer stop()
	br := bufio.NewReaderSize(s.Body, readBuffer)
	var (
		dec      flowapi.Decoder
		batch    []flowapi.Flow
		long     []byte // a line longer than br's buffer
		statuses int
	)
	sendBatch := func() bool {
		if len(batch) == 0 {
			return true
		}
		it := item{flows: batch}
		batch = nil
		return send(it)
	}
	end := func(err error) {
		if errors.Is(err, io.EOF) || ctx.Err() != nil {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("read the flows: %w", err)
		}
		if sendBatch() {
			send(item{done: true, err: err})
		}
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || long != nil {
			if len(long)+len(line) > maxLine {
				end(fmt.Errorf("a line longer than %d bytes (is this the agent's GET /v1/flows?)", maxLine))
				return
			}
			long = append(long, line...)
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			line, long = long, nil
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			if batch == nil {
				select {
				case batch = <-free:
				default:
					batch = make([]flowapi.Flow, 0, maxBatch)
				}
			}
			batch = append(batch, flowapi.Flow{})
			l := flowapi.Line{Flow: &batch[len(batch)-1]}
			if derr := dec.DecodeLine(line, &l); derr != nil {
				batch = batch[:len(batch)-1]
				end(derr)
				return
			}
			if l.Flow == nil {
				batch = batch[:len(batch)-1]
			}
			if l.Status != nil {
				statuses++
				if !sendBatch() || !send(item{status: l.Status, history: follow && statuses == 2}) {
					return
				}
			}
		}
		if err != nil {
			end(err)
			return
		}
		if (br.Buffered() == 0 || len(batch) >= maxBatch) && !sendBatch() {
			return
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
// before any streamed flow is printed. What was printed is flushed
// whenever no item is at hand, before waiting for one.
func (m *merge) run(ctx context.Context, items <-chan item, free chan<- []flowapi.Flow, live int) error {
	follow := m.opts.Request.Follow
	waiting := live // agents whose held flows are not all in
	tick := time.NewTicker(m.opts.Window / 2)
	defer tick.Stop()
	for live > 0 {
		var (
			it  item
			now time.Time
			got bool
		)
		select {
		case <-ctx.Done():
			return m.flush(m.merger.drain())
		case now = <-tick.C:
		case it = <-items:
			got = true
		default:
			if err := m.opts.Printer.Flush(); err != nil {
				return fmt.Errorf("print: %w", err)
			}
			select {
			case <-ctx.Done():
				return m.flush(m.merger.drain())
			case now = <-tick.C:
			case it = <-items:
				got = true
			}
		}
		if !got {
			if waiting == 0 {
				if err := m.flush(m.merger.ready(now)); err != nil {
					return err
				}
			}
			continue
		}
		switch {
		case len(it.flows) > 0:
			if err := m.flows(it.node, it.flows, waiting); err != nil {
				return err
			}
			select {
			case free <- it.flows[:0]:
			default:
			}
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
				m.warnf("# %s: %v\n", it.node, it.err)
			}
			if follow && !m.held[it.node] { // ended before its held flows did
				m.held[it.node] = true
				waiting--
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

// flows takes the flows node read in a row: held ones until all are in,
// then printed at once (one agent) or through the merger. They are copied:
// fs is reused.
func (m *merge) flows(node string, fs []flowapi.Flow, waiting int) error {
	switch {
	case waiting > 0 && (!m.opts.Request.Follow || !m.held[node]):
		m.history = append(m.history, fs...)
	case m.direct:
		for i := range fs {
			if err := m.flush(fs[i : i+1]); err != nil {
				return err
			}
		}
	default:
		for i := range fs {
			m.merger.push(fs[i])
		}
	}
	return nil
}

// flush prints fs, a group of flows (a table aligns them).
func (m *merge) flush(fs []flowapi.Flow) error {
	for i := range fs {
		if err := m.opts.Printer.Print(&fs[i]); err != nil {
			return fmt.Errorf("print: %w", err)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	if g, ok := m.opts.Printer.(grouper); ok {
		return g.endGroup()
	}
	return m.opts.Printer.Flush()
}

// warnf writes a line to Warn after what was printed.
func (m *merge) warnf(format string, args ...any) {
	_ = m.opts.Printer.Flush() // a failure is print's to say
	fmt.Fprintf(m.opts.Warn, format, args...)
}

// status says the events node lost since its last status line.
func (m *merge) status(node string, st *flowapi.Status) {
	m.last[node] = *st
	before, seen := m.lost[node]
	m.lost[node] = st.Lost
	if !seen {
		if st.Lost.Datapath > 0 || st.Lost.Undecodable > 0 {
			m.warnf("# %s: %d events lost in the datapath, %d undecodable since the agent started\n", node, st.Lost.Datapath, st.Lost.Undecodable)
		}
		return
	}
	if d := st.Lost.Datapath - before.Datapath; d > 0 {
		m.warnf("# %s: %d events lost in the datapath (the agent did not read its ring buffer fast enough)\n", node, d)
	}
	if d := st.Lost.Undecodable - before.Undecodable; d > 0 {
		m.warnf("# %s: %d events that do not decode (agent and datapath of different builds?)\n", node, d)
	}
	if d := st.Lost.Stream - before.Stream; d > 0 {
		m.warnf("# %s: %d flows skipped: this stream was read more slowly than they came (filter more, or raise --flows-capacity)\n", node, d)
	}
}

// summary says, after a query, how much older flows each agent no longer
// holds.
func (m *merge) summary() {
	for _, node := range slices.Sorted(maps.Keys(m.last)) {
		if st := m.last[node]; st.Lost.Overwritten > 0 {
			m.warnf("# %s: holds the last %d flows; %d older ones were overwritten (--flows-capacity)\n", node, st.Held, st.Lost.Overwritten)
		}
	}
}
