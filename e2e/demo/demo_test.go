//go:build linux

package demo

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/clustermesh/clustermesh/e2e/bed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	bed.RemoveBinaries()
	os.Exit(code)
}

// The demo (make demo) runs in make test: its story, told with real
// traffic on the bed, must hold.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts two whole clusters on the bed")
	}
	if os.Geteuid() != 0 {
		t.Fatal("privileged test: needs root (network namespaces, BPF, bpffs, cgroups); run as root")
	}
	dir, err := os.MkdirTemp("", "cm-demo") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var out bytes.Buffer
	if err := Run(t.Context(), &out, filepath.Clean(dir)); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	t.Log(out.String())
}
