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
