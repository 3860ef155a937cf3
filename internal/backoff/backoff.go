// Package backoff is the project's one retry delay: exponential, jittered,
// capped and context-aware, with an injectable clock.
//
// Rules: a Backoff belongs to one goroutine (it is not safe for concurrent
// use); Wait returns ctx.Err() as soon as the context ends.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"

	"github.com/clustermesh/clustermesh/internal/clock"
)

// Backoff computes growing delays between attempts.
type Backoff struct {
	// Min is the first delay (default 100ms).
	Min time.Duration
	// Max caps every delay (default 1m).
	Max time.Duration
	// Factor multiplies the delay after each attempt (default 2).
	Factor float64
	// Jitter in [0,1] spreads each delay uniformly over [d*(1-Jitter), d]
	// (default 0.2; negative means none).
	Jitter float64
	// Clock defaults to the real clock.
	Clock clock.Clock

	attempt int
}

// Attempts returns how many delays were handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts again from Min, typically after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Next returns the next delay and counts an attempt.
func (b *Backoff) Next() time.Duration {
	d := b.delay(b.attempt)
	b.attempt++
	return d
}

func (b *Backoff) delay(attempt int) time.Duration {
	minD, maxD, factor, jitter := b.Min, b.Max, b.Factor, b.Jitter
	if minD <= 0 {
		minD = 100 * time.Millisecond
	}
	if maxD <= 0 {
		maxD = time.Minute
	}
	if maxD < minD {
		maxD = minD
	}
	if factor < 1 {
		factor = 2
	}
	if jitter == 0 {
		jitter = 0.2
	}
	d := float64(minD) * math.Pow(factor, float64(attempt))
	if d > float64(maxD) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(maxD)
	}
	if jitter > 0 {
		if jitter > 1 {
			jitter = 1
		}
		d -= d * jitter * rand.Float64() //nolint:gosec // jitter needs no cryptographic randomness
	}
	return time.Duration(d)
}

// Wait sleeps for the next delay or until ctx ends, whichever is first.
func (b *Backoff) Wait(ctx context.Context) error {
	clk := b.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	t := clk.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
