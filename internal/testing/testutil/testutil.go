// Package testutil holds the helpers the project's tests share.
package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond every 10ms until it holds, and fails the test
// naming what it waited for when timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Consistently checks cond every 10ms for the whole duration and fails the
// test as soon as it does not hold: for "nothing happens" assertions, which
// need a window rather than a condition to wait for.
func Consistently(t testing.TB, duration time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(duration)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s stopped holding within %v", what, duration)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
