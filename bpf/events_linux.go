package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// EventReader decodes the events of the datapath's ring buffer. It is not
// safe for concurrent use; one reader per Datapath consumes each event once.
type EventReader struct {
	r    *ringbuf.Reader
	boot time.Time
	rec  ringbuf.Record // reused by every Read: no allocation per event
}

// Events opens a reader of the datapath's ring buffer. Close it before the
// Datapath.
func (d *Datapath) Events() (*EventReader, error) {
	r, err := ringbuf.NewReader(d.tc.Events)
	if err != nil {
		return nil, fmt.Errorf("open events ring buffer: %w", err)
	}
	return &EventReader{r: r, boot: bootTime()}, nil
}

// bootTime is the wall time at which CLOCK_MONOTONIC (bpf_ktime_get_ns) was 0.
func bootTime() time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Time{}
	}
	return now.Add(-time.Duration(ts.Nano()))
}

// pollInterval bounds how long Read blocks before it looks at its ctx again.
const pollInterval = 100 * time.Millisecond

// Read returns the next event; it blocks until one arrives, ctx ends, or the
// reader is closed.
func (r *EventReader) Read(ctx context.Context) (Event, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Event{}, err
		}
		deadline := time.Now().Add(pollInterval)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		r.r.SetDeadline(deadline)
		err := r.r.ReadInto(&r.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return Event{}, fmt.Errorf("read event: %w", err)
		}
		return decodeEvent(r.rec.RawSample, r.boot)
	}
}

// EventsLost returns the number of events the datapath could not report
// since it was loaded because its ring buffer was full (summed over CPUs).
func (d *Datapath) EventsLost() (uint64, error) {
	var per []uint64
	if err := d.tc.EventsLost.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("read lost events: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// Close stops the reader; a blocked Read returns an error.
func (r *EventReader) Close() error {
	return r.r.Close()
}
