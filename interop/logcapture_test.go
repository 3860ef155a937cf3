package interop

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
)

// logCapture records every slog record of the loggers it hands out (Debug
// included), so that a test can fail on any warning of Cilium's code, and
// wait for a Debug message that proves a code path ran.
type logCapture struct {
	name string

	mu      sync.Mutex
	records []capturedRecord
}

type capturedRecord struct {
	Level slog.Level
	Msg   string
	Attrs string
}

func (r capturedRecord) String() string {
	return fmt.Sprintf("%s %q %s", r.Level, r.Msg, r.Attrs)
}

// newLogCapture returns a capture and a logger writing into it. (Nothing
// goes to the test log as it happens: Cilium's goroutines may still log
// after the test returned.)
func newLogCapture(name string) (*logCapture, *slog.Logger) {
	c := &logCapture{name: name}
	return c, slog.New(&captureHandler{c: c})
}

// Warnings returns the records at Warn level and above.
func (c *logCapture) Warnings() []capturedRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []capturedRecord
	for _, r := range c.records {
		if r.Level >= slog.LevelWarn {
			out = append(out, r)
		}
	}
	return out
}

// Count returns how many records have message msg.
func (c *logCapture) Count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.records {
		if r.Msg == msg {
			n++
		}
	}
	return n
}

// RequireNoWarnings fails the test with every record at Warn and above.
func (c *logCapture) RequireNoWarnings(t testing.TB) {
	t.Helper()
	if w := c.Warnings(); len(w) > 0 {
		lines := make([]string, len(w))
		for i, r := range w {
			lines[i] = "  " + r.String()
		}
		t.Errorf("%s logged %d warning(s) or error(s):\n%s", c.name, len(w), strings.Join(lines, "\n"))
	}
}

type captureHandler struct {
	c      *logCapture
	attrs  []string
	groups []string
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := slices.Clone(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, h.format(a))
		return true
	})
	rec := capturedRecord{Level: r.Level, Msg: r.Message, Attrs: strings.Join(attrs, " ")}
	h.c.mu.Lock()
	h.c.records = append(h.c.records, rec)
	h.c.mu.Unlock()
	return nil
}

func (h *captureHandler) format(a slog.Attr) string {
	key := a.Key
	if len(h.groups) > 0 {
		key = strings.Join(h.groups, ".") + "." + key
	}
	return key + "=" + a.Value.Resolve().String()
}

func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = slices.Clone(h.attrs)
	for _, a := range as {
		n.attrs = append(n.attrs, h.format(a))
	}
	return &n
}

func (h *captureHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.groups = append(slices.Clone(h.groups), name)
	return &n
}
