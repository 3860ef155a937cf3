package testutil

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakWait is how long VerifyNoLeaks waits for goroutines that are still
// stopping when the last test ends (a closed gRPC connection's, a stopped
// informer's) before it calls them leaked: long enough for a loaded CI
// machine, far shorter than a leaked goroutine's life (until exit).
const leakWait = 10 * time.Second

// VerifyNoLeaks runs a package's tests (call it from TestMain) and then
// fails the run if goroutines the tests started are still running: a
// component whose Run returned, or a client that was closed, must not leave
// any behind. Nothing is ignored: no library the tests use leaves a
// goroutine of its own running (an exception would be listed here with its
// reason).
func VerifyNoLeaks(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := findLeaks(leakWait); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines the tests started are still running %v after the last one ended:\n%v\n", leakWait, err)
			code = 1
		}
	}
	os.Exit(code)
}

// findLeaks returns goleak's report of the goroutines other than the
// caller's that are still running after wait, or nil once there are none.
func findLeaks(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := goleak.Find() // retries for about 0.4 s itself
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
