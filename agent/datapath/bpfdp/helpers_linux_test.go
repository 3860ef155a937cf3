package bpfdp_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/bpfdp"
	"github.com/clustermesh/clustermesh/bpf"
)

// requireRoot fails (it does not skip): the kernel features exist on the
// machines the project tests on, and the CI runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("privileged test: needs root (CAP_BPF and CAP_SYS_ADMIN to load programs and mount bpffs); run as root")
	}
}

// newKernel mounts a fresh bpffs for one test (unmounted at cleanup, which
// releases every pin) and returns the pin directory in it.
func newKernel(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
	return filepath.Join(dir, "clustermesh")
}

// open opens the datapath pinned in pinDir and closes it at cleanup.
func open(t *testing.T, pinDir string) *bpfdp.Datapath {
	t.Helper()
	return openWith(t, bpf.Options{PinDir: pinDir}, "")
}

// openWith opens the datapath of opts, with endpoints' interfaces in the
// network namespace at netns, and closes it at cleanup.
func openWith(t *testing.T, opts bpf.Options, netns string, o ...bpfdp.Option) *bpfdp.Datapath {
	t.Helper()
	d, err := bpfdp.New(t.Context(), opts, netns, o...)
	if err != nil {
		t.Fatalf("bpfdp.New: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// opener returns a function that opens the datapath pinned in pinDir.
func opener(pinDir string) func(t *testing.T) datapath.Datapath {
	return func(t *testing.T) datapath.Datapath { return open(t, pinDir) }
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
