package policy

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity"
)

const (
	benchPolicies   = 1_000
	benchIdentities = 50_000
	benchEndpoints  = 100
	benchApps       = 500
)

func benchIdentity(i int) Identity {
	cluster := []string{"c1", "c2", "c3"}[i%3]
	return Identity{ID: identity.NumericIdentity(65536 + i), Labels: identity.PodLabels(cluster, fmt.Sprintf("ns%d", i%50), "default",
		map[string]string{"app": fmt.Sprintf("app%d", i%benchApps), "version": fmt.Sprintf("v%d", i%7)}, nil)}
}

// benchEngine builds a cluster with 1,000 policies (peers selected by app,
// a third of them across clusters, with ports), 50,000 identities and 100
// local endpoints.
func benchEngine(b *testing.B) *Engine {
	b.Helper()
	e := NewEngine(Config{Cluster: "c1", DefaultLocalCluster: true})
	for i := range benchIdentities {
		e.UpsertIdentity(benchIdentity(i))
	}
	for i := range benchEndpoints {
		idt := benchIdentity(i * 3) // cluster c1
		e.UpsertEndpoint(Endpoint{Key: fmt.Sprintf("ns%d/pod%d", i%50, i), Namespace: fmt.Sprintf("ns%d", i%50), ID: idt.ID, Labels: idt.Labels})
	}
	for i := range benchPolicies {
		peer := metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", (i*7)%benchApps)}}
		if i%3 == 0 {
			peer.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: identity.ClusterLabelKey, Operator: metav1.LabelSelectorOpExists}}
		}
		p := &cmv1.ClusterMeshClusterwideNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i)}, Spec: &cmv1.PolicyRule{
			EndpointSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", (i*3)%benchApps)}},
			Ingress: []cmv1.IngressRule{{FromEndpoints: []metav1.LabelSelector{peer},
				ToPorts: []cmv1.PortRule{{Ports: []cmv1.PortProtocol{{Port: fmt.Sprint(8000 + i%10), Protocol: "TCP"}}}}}},
		}}
		e.UpsertPolicy(e.CompileClusterwidePolicy(p))
	}
	return e
}

// materialize builds every endpoint's result (what the reconciler reads).
func materialize(e *Engine) int {
	n := 0
	for _, k := range e.Endpoints() {
		p, _ := e.EndpointPolicy(k)
		n += len(p.Rules)
	}
	return n
}

// BenchmarkNewIdentity prints the time to bring every endpoint's result up
// to date after one new identity appears, incrementally and by a full
// recompute of the same engine, with 1,000 policies and 50,000 identities.
func BenchmarkNewIdentity(b *testing.B) {
	e := benchEngine(b)
	materialize(e)
	var inc, full time.Duration
	n := 0
	for b.Loop() {
		// A new pod identity that many policies select (app0 is a peer of
		// several), in a peer cluster, and then gone again.
		idt := benchIdentity(benchIdentities + n)
		idt.ID = identity.NumericIdentity(65536 + benchIdentities + n)
		start := time.Now()
		e.UpsertIdentity(idt)
		materialize(e)
		inc += time.Since(start)

		start = time.Now()
		e.Recompute()
		materialize(e)
		full += time.Since(start)

		e.DeleteIdentity(idt.ID)
		materialize(e)
		n++
	}
	b.ReportMetric(float64(inc.Nanoseconds())/float64(n), "incremental-ns")
	b.ReportMetric(float64(full.Nanoseconds())/float64(n), "full-recompute-ns")
	b.ReportMetric(float64(inc)/float64(full), "incremental/full")
	b.ReportMetric(float64(len(e.selectors)), "cached-selectors")
}

// BenchmarkNewIdentityIncremental is BenchmarkNewIdentity's incremental
// path alone (no full recompute in the loop), so that it runs many
// iterations: a new identity that many policies select, every endpoint's
// result brought up to date, the identity deleted again.
func BenchmarkNewIdentityIncremental(b *testing.B) {
	e := benchEngine(b)
	materialize(e)
	// The thread's own CPU time as well: on a shared machine the wall
	// time per op mostly says how often the thread was descheduled.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU(b)
	n := 0
	for b.Loop() {
		idt := benchIdentity(benchIdentities + n)
		idt.ID = identity.NumericIdentity(65536 + benchIdentities + n)
		e.UpsertIdentity(idt)
		materialize(e)
		e.DeleteIdentity(idt.ID)
		materialize(e)
		n++
	}
	b.ReportMetric(float64(threadCPU(b)-cpu0)/float64(n), "thread-cpu-ns/op")
}

// threadCPU is the calling thread's CPU time (user and system), in ns.
func threadCPU(b *testing.B) int64 {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
