package interop

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// isolateEnv names the test a child process runs (see inOwnProcess).
const isolateEnv = "INTEROP_ISOLATED_TEST"

// inOwnProcess runs the calling test again, alone, in a child process of the
// test binary, and reports whether the caller is that child: the caller then
// runs the test body, otherwise it returns at once (the child's verdict is
// the test's).
//
// Cilium keeps the identity layout in process-global state fixed on first
// use (pkg/identity's cluster ID shift is computed once from
// clustermesh/types.ClusterIDMax), so a test that needs a given
// max-connected-clusters runs in a process of its own, as each Cilium agent
// does.
//
//	if !inOwnProcess(t) {
//		return
//	}
func inOwnProcess(t *testing.T) bool {
	t.Helper()
	switch os.Getenv(isolateEnv) {
	case t.Name():
		return true
	case "":
	default:
		t.Skipf("child process of %s", os.Getenv(isolateEnv))
	}
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	args := []string{"-test.run=" + strings.Join(parts, "/"), "-test.count=1", "-test.v"}
	ctx := t.Context()
	if dl, ok := t.Deadline(); ok {
		// Leave the parent time to report what the child printed.
		left := time.Until(dl) - 5*time.Second
		args = append(args, "-test.timeout="+left.String())
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-2*time.Second))
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), isolateEnv+"="+t.Name())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	if err != nil || testing.Verbose() {
		t.Logf("child process %s (%v):\n%s", strings.Join(cmd.Args, " "), time.Since(start).Round(time.Millisecond), out.String())
	}
	if err != nil {
		t.Fatalf("child process: %v", err)
	}
	if !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("child process did not run %s", t.Name())
	}
	return false
}
