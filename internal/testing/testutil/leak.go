package testutil

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyNoLeaks runs a package's tests (call it from TestMain) and then
// fails the run if goroutines the tests started are still running: a
// component whose Run returned, or a client that was closed, must not leave
// any behind. goleak retries for a while, so goroutines that are stopping
// as the last test ends do not count. Nothing is ignored: no library the
// tests use leaves a goroutine of its own running (an exception would be
// listed here with its reason).
func VerifyNoLeaks(m *testing.M) {
	goleak.VerifyTestMain(m)
}
