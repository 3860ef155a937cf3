package backoff

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/internal/clock"
)

func TestDelaysGrowAndCap(t *testing.T) {
	b := &Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond, Factor: 2, Jitter: -1}
	want := []time.Duration{10, 20, 40, 80, 100, 100}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("attempt %d: delay %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != 10*time.Millisecond {
		t.Fatalf("after Reset: delay %v, want 10ms", got)
	}
}

func TestJitterStaysInBounds(t *testing.T) {
	b := &Backoff{Min: time.Second, Max: time.Second, Jitter: 0.5}
	for range 1000 {
		d := b.Next()
		if d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jittered delay %v outside [500ms, 1s]", d)
		}
	}
}

func TestHugeAttemptDoesNotOverflow(t *testing.T) {
	b := &Backoff{Min: time.Second, Max: time.Hour, Jitter: -1}
	b.attempt = 5000
	if got := b.Next(); got != time.Hour {
		t.Fatalf("delay after 5000 attempts = %v, want the cap 1h", got)
	}
}

func TestWaitUsesClockAndContext(t *testing.T) {
	fc := clock.NewFake(time.Unix(0, 0))
	b := &Backoff{Min: time.Minute, Jitter: -1, Clock: fc}
	done := make(chan error, 1)
	go func() { done <- b.Wait(t.Context()) }()
	for fc.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v before the clock moved", err)
	default:
	}
	fc.Step(time.Minute)
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled context = %v, want context.Canceled", err)
	}
}
