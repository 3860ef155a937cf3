package cli

import (
	"strings"
	"testing"

	"github.com/clustermesh/clustermesh/cli/mesh"
)

// connect says, per cluster, whether its peers are read through its
// clustermesh-apiserver's cache or by every agent.
func TestReadMode(t *testing.T) {
	c1, c2 := &mesh.Settings{Name: "c1", Cache: true}, &mesh.Settings{Name: "c2"}
	var b strings.Builder
	if err := writeResult(&b, mesh.Result{Changes: []string{"x"}}, "connected", []mesh.Pair{{A: c1, B: c2}}); err != nil {
		t.Fatal(err)
	}
	want := "x\nconnected c1 <-> c2\n" +
		"  c1 reads c2 through the cache of its clustermesh-apiserver (one connection for the cluster; cache: true)\n" +
		"  c2 reads c1 from every agent (cache: false)\n"
	if b.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", b.String(), want)
	}
}
