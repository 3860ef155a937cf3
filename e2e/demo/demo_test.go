package demo

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The demo is the project's end-to-end test: two clusters installed,
// connected and checked through the CLI, the global Service merged across
// them, affinity, and the cross-cluster policy.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts two kube-apiservers, two clustermesh-apiservers and four agents")
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
