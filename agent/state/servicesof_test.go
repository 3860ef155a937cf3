package state

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ServicesOf and Drain find a cluster's services through the primary
// index's prefix: exactly that cluster's, in namespace/name order, never
// those of a cluster whose name extends it (c2, c20).
func TestServicesOfIsTheWholeClusterName(t *testing.T) {
	s := newState(t)
	sink := s.RemoteSink()
	for _, sv := range [][3]string{{"c2", "ns2", "b"}, {"c2", "ns1", "z"}, {"c20", "ns1", "a"}, {"c", "ns1", "a"}, {"c2", "ns1", "a"}} {
		sink.UpsertService(sv[0], service(sv[0], sv[1], sv[2]))
	}
	names := func(cluster string) []string {
		var out []string
		for _, r := range s.Snapshot().ServicesOf(cluster) {
			out = append(out, r.Cluster+"/"+r.Namespace+"/"+r.Name)
		}
		return out
	}
	if diff := cmp.Diff([]string{"c2/ns1/a", "c2/ns1/z", "c2/ns2/b"}, names("c2")); diff != "" {
		t.Fatalf("ServicesOf(c2) (-want +got):\n%s", diff)
	}
	if got := names(""); got != nil {
		t.Fatalf("ServicesOf(\"\") = %v, want none", got)
	}
	sink.Drain("c2")
	if got := names("c2"); got != nil {
		t.Fatalf("after Drain(c2), ServicesOf(c2) = %v", got)
	}
	if diff := cmp.Diff([]string{"c20/ns1/a"}, names("c20")); diff != "" {
		t.Fatalf("Drain(c2) touched c20 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"c/ns1/a"}, names("c")); diff != "" {
		t.Fatalf("Drain(c2) touched c (-want +got):\n%s", diff)
	}
}
