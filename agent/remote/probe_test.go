package remote_test

import (
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
)

// A silent partition (packets dropped, connections left open: the etcd
// client's watches neither fail nor end) is reported: the peer turns
// unconnected, with a failure that says it is unreachable, within a few
// probe intervals; its state stays; after the heal it is connected again
// and what changed meanwhile arrives, with no spurious delete.
func TestSilentPartitionReportsUnreachable(t *testing.T) {
	p, proxy, cfg := peerBehindProxy(t)
	paths := p.Env.Paths
	sink := newMemSink()
	const interval = 100 * time.Millisecond
	c, err := remote.New(remote.Config{
		Name: p.Name, Client: cfg, Paths: paths, LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255,
		Registry: remote.NewRegistry("cluster1", 1), Sink: sink, Backoff: fast, ProbeInterval: interval,
	})
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Go(t, c.Run)
	eventually(t, "peer ready", func() bool { return c.Status().Ready && len(sink.keys()) == 4 })
	if st := c.Status(); st.LastContact.IsZero() {
		t.Fatalf("connected peer without a last contact: %+v", st)
	}

	proxy.Hold()
	cut := time.Now()
	eventually(t, "the peer reported unreachable", func() bool { return !c.Status().Connected })
	took := time.Since(cut)
	st := c.Status()
	if !strings.Contains(st.LastFailure, "unreachable") || !strings.Contains(st.LastFailure, "last-known state is kept") {
		t.Fatalf("failure of an unreachable peer: %q", st.LastFailure)
	}
	if silent := st.LastFailureTime.Sub(st.LastContact); silent < 2*interval || st.LastContact.After(cut) {
		t.Fatalf("reported unreachable after %s without an answer (last contact %s, cut %s), want two probe intervals (%s)",
			silent, st.LastContact, cut, 2*interval)
	}
	t.Logf("unreachable reported %s after the cut (probe every %s): %s", took.Round(time.Millisecond), interval, st.LastFailure)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.7", ipEntry("10.2.1.7", 131073))
	time.Sleep(5 * interval)
	if got := sink.keys(); len(got) != 4 || sink.deletes() != 0 {
		t.Fatalf("state changed behind the partition: %v, %d deletes", got, sink.deletes())
	}
	if !c.Status().Ready {
		t.Fatalf("an unreachable peer is still ready (its state is kept): %+v", c.Status())
	}

	proxy.Restore()
	eventually(t, "connected again, with the entry written during the cut", func() bool {
		return c.Status().Connected && len(sink.keys()) == 5
	})
	if n := sink.deletes(); n != 0 {
		t.Fatalf("%d deletes after the heal, want none: %v", n, sink.keys())
	}
}
