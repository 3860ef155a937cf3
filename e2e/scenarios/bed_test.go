//go:build linux

package scenarios

import (
	"io"
	"os"
	"testing"

	"github.com/clustermesh/clustermesh/e2e/bed"
)

// startBed starts an empty bed for a test or benchmark, logging to log
// (nil: nowhere); it is closed at cleanup, and its directory removed unless
// the test failed (then its path is logged: the components' logs are
// there).
func startBed(tb testing.TB, log io.Writer) *bed.Bed {
	tb.Helper()
	return startBedWith(tb, log, bed.Options{})
}

// startBedWith is startBed with options (Dir and Log are startBed's).
func startBedWith(tb testing.TB, log io.Writer, opt bed.Options) *bed.Bed {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("privileged: needs root (network namespaces, BPF, bpffs, cgroups); run as root")
	}
	dir, err := os.MkdirTemp("", "cmbed") // short: unix socket paths live under it
	if err != nil {
		tb.Fatal(err)
	}
	opt.Dir, opt.Log = dir, log
	b, err := bed.New(tb.Context(), opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("bed teardown: %v", err)
		}
		if !tb.Failed() {
			_ = os.RemoveAll(dir)
		} else {
			tb.Logf("the bed's files and logs are kept in %s", dir)
		}
	})
	return b
}
