package main

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// forbiddenServerPrefix is the etcd server. Only the clustermesh-apiserver
// (through kvstore/etcdserver) and the tests may link it.
const forbiddenServerPrefix = "go.etcd.io/etcd/server/"

// TestBinariesDoNotLinkEtcdServer guards that the binaries running on every
// node (the agent and the CNI plugin) and the CLI do not link the etcd server:
// it is megabytes of code and a wide attack surface that only the
// clustermesh-apiserver needs. The usual culprit is an import of
// kvstore/etcdserver, or of go.etcd.io/etcd/server/v3 from a package the
// agent uses (kvstore must only use the etcd client).
func TestBinariesDoNotLinkEtcdServer(t *testing.T) {
	for _, pkg := range []string{
		"github.com/clustermesh/clustermesh/cmd/clustermesh-agent",
		"github.com/clustermesh/clustermesh/cmd/clustermesh-cni",
		"github.com/clustermesh/clustermesh/cmd/clustermesh",
	} {
		t.Run(pkg[strings.LastIndex(pkg, "/")+1:], func(t *testing.T) {
			t.Parallel()
			imports := listDeps(t, pkg)
			var bad []string
			for p := range imports {
				if strings.HasPrefix(p, forbiddenServerPrefix) {
					bad = append(bad, p)
				}
			}
			if len(bad) == 0 {
				return
			}
			slices.Sort(bad)
			// Name the import chain of the first offender reached from
			// the binary, so that the package to fix is obvious.
			chain := importChain(imports, pkg, func(p string) bool { return strings.HasPrefix(p, forbiddenServerPrefix) })
			t.Fatalf("%s links the etcd server (%d packages under %s, e.g. %s)\nimport chain: %s",
				pkg, len(bad), forbiddenServerPrefix, bad[0], strings.Join(chain, "\n  -> "))
		})
	}
}

// listDeps returns every dependency of pkg (pkg included) with its direct
// imports, from `go list -deps`.
func listDeps(t *testing.T, pkg string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", pkg)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr)
	}
	deps := make(map[string][]string)
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		deps[fields[0]] = fields[1:]
	}
	if _, ok := deps[pkg]; !ok {
		t.Fatalf("go list -deps %s did not list the package itself:\n%s", pkg, out)
	}
	return deps
}

// importChain returns a shortest import chain from root to a package
// matching target (breadth-first), or nil.
func importChain(imports map[string][]string, root string, target func(string) bool) []string {
	parent := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if target(p) {
			var chain []string
			for ; p != ""; p = parent[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, q := range imports[p] {
			if _, seen := parent[q]; !seen {
				parent[q] = p
				queue = append(queue, q)
			}
		}
	}
	return nil
}

// harnessPrefix holds the test harnesses (internal/testing).
const harnessPrefix = "github.com/clustermesh/clustermesh/internal/testing"

// TestBinariesDoNotLinkTestHarnesses guards that the product's binaries do
// not link a test harness (a kube-apiserver test bed, simulated peers).
func TestBinariesDoNotLinkTestHarnesses(t *testing.T) {
	for _, pkg := range []string{
		"github.com/clustermesh/clustermesh/cmd/clustermesh-agent",
		"github.com/clustermesh/clustermesh/cmd/clustermesh-cni",
		"github.com/clustermesh/clustermesh/cmd/clustermesh",
		"github.com/clustermesh/clustermesh/cmd/clustermesh-apiserver",
	} {
		t.Run(pkg[strings.LastIndex(pkg, "/")+1:], func(t *testing.T) {
			t.Parallel()
			imports := listDeps(t, pkg)
			harness := func(p string) bool { return strings.HasPrefix(p, harnessPrefix) }
			if chain := importChain(imports, pkg, harness); chain != nil {
				t.Fatalf("%s links a test harness\nimport chain: %s", pkg, strings.Join(chain, "\n  -> "))
			}
		})
	}
}
