package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

const benchPods = 10_000

// BenchmarkExport prints (1) the initial export throughput of 10k pods with
// IPs (100 label sets) to the ip synced marker, from a cold start of the
// clustermesh-apiserver (embedded etcd start and the informers' initial list
// included) and from the moment its informers are synced, (2) the latency from a pod's IP appearing in Kubernetes
// to its ip key in etcd, next to a raw informer's delivery of the same
// update and a raw etcd put measured in the same run, and (3) the latency
// from a pod with a new label set to its identity key in etcd.
func BenchmarkExport(b *testing.B) {
	for b.Loop() {
		runExportBench(b)
	}
}

func runExportBench(b *testing.B) {
	tb := newStoppedBed(b, nil)
	cs := tb.kube.Client
	ctx := b.Context()

	// (1) Pods exist before the apiserver starts.
	parallel(b, 8, benchPods, func(i int) error {
		return createPodWithIP(ctx, tb, fmt.Sprintf("p%05d", i), map[string]string{"app": fmt.Sprintf("a%d", i%100)},
			fmt.Sprintf("10.%d.%d.%d", 10+i/65536, (i/256)%256, i%256))
	})
	start := time.Now()
	tb.start(b)
	<-tb.srv.CachesSynced()
	listed := time.Now()
	tb.admin = tb.client(b, "admin")
	marker := tb.paths.Synced("cluster1", tb.paths.IPPrefix())
	waitFor(b, "ip synced marker", func() bool { return tb.get(b, marker) != "" })
	initial, exportOnly := time.Since(start), time.Since(listed)
	if n := len(tb.list(b, tb.paths.IPDefaultPrefix())); n != benchPods {
		b.Fatalf("exported %d ip entries, want %d", n, benchPods)
	}

	// (2) IP latency: a raw informer and an etcd watch observe each update.
	const n = 200
	informerSeen, etcdSeen := newStamps(), newStamps()
	factory := informers.NewSharedInformerFactory(cs, 0)
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, o any) {
		if p := o.(*corev1.Pod); strings.HasPrefix(p.Name, "lat") && p.Status.PodIP != "" {
			informerSeen.mark(p.Status.PodIP)
		}
	}})
	wctx, cancel := context.WithCancel(ctx)
	factory.Start(wctx.Done())
	defer factory.Shutdown() // runs after cancel below: informers stop on wctx
	defer cancel()
	cache.WaitForCacheSync(wctx.Done(), inf.HasSynced)
	wch := tb.admin.Etcd().Watch(wctx, tb.paths.IPDefaultPrefix(), clientv3.WithPrefix())
	go func() {
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					etcdSeen.mark(strings.TrimPrefix(string(ev.Kv.Key), tb.paths.IPDefaultPrefix()))
				}
			}
		}
	}()
	sent := newStamps()
	var putLat []time.Duration
	for i := range n {
		ip := fmt.Sprintf("10.200.%d.%d", i/256, i%256)
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("lat%03d", i), Labels: map[string]string{"app": "a1"}},
			Spec: podSpec()}
		p, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "192.168.1.10"}
		sent.mark(ip)
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		ps := time.Now()
		if _, err := tb.admin.Etcd().Put(ctx, "bench/raw-put", `{"IP":"`+ip+`","ID":65537}`); err != nil {
			b.Fatal(err)
		}
		putLat = append(putLat, time.Since(ps))
		waitFor(b, "ip "+ip+" in etcd", func() bool { return etcdSeen.has(ip) && informerSeen.has(ip) })
	}
	exportLat, informerLat := sent.until(etcdSeen), sent.until(informerSeen)

	// (3) New label sets: pod creation to identity key in etcd.
	var allocLat []time.Duration
	for i := range 20 {
		before := len(tb.list(b, tb.paths.IdentityIDPrefix()))
		s := time.Now()
		if err := createPodWithIP(ctx, tb, fmt.Sprintf("new%02d", i), map[string]string{"app": fmt.Sprintf("new-%d", i)},
			fmt.Sprintf("10.201.0.%d", i+1)); err != nil {
			b.Fatal(err)
		}
		waitFor(b, "new identity", func() bool { return len(tb.list(b, tb.paths.IdentityIDPrefix())) > before })
		allocLat = append(allocLat, time.Since(s))
	}

	b.ReportMetric(float64(benchPods)/initial.Seconds(), "cold-start-pods/s")
	b.ReportMetric(float64(benchPods)/exportOnly.Seconds(), "export-after-list-pods/s")
	b.ReportMetric(ms(pct(exportLat, 50)), "ip-p50-ms")
	b.ReportMetric(ms(pct(exportLat, 99)), "ip-p99-ms")
	b.ReportMetric(ms(pct(informerLat, 50)), "informer-p50-ms")
	b.ReportMetric(ms(pct(informerLat, 99)), "informer-p99-ms")
	b.ReportMetric(ms(pct(putLat, 99)), "raw-put-p99-ms")
	b.ReportMetric(pct(exportLat, 99).Seconds()/(pct(informerLat, 99)+pct(putLat, 99)).Seconds(), "ip-p99/(informer+put)")
	b.ReportMetric(ms(pct(allocLat, 50)), "new-identity-p50-ms")
	b.ReportMetric(ms(pct(allocLat, 99)), "new-identity-p99-ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// stamps records when each key was first seen.
type stamps struct {
	mu sync.Mutex
	at map[string]time.Time
}

func newStamps() *stamps { return &stamps{at: map[string]time.Time{}} }

func (s *stamps) mark(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.at[k]; !ok {
		s.at[k] = time.Now()
	}
}

func (s *stamps) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.at[k]
	return ok
}

// until returns, for each key of s, the time until other saw it.
func (s *stamps) until(other *stamps) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	other.mu.Lock()
	defer other.mu.Unlock()
	var out []time.Duration
	for k, t0 := range s.at {
		if t1, ok := other.at[k]; ok {
			out = append(out, t1.Sub(t0))
		}
	}
	return out
}

func waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	waitWithin(b, 5*time.Minute, what, cond)
}

// createPodWithIP creates a running pod with an IP, as kubelet would.
func createPodWithIP(ctx context.Context, b *bed, name string, labels map[string]string, ip string) error {
	cs := b.kube.Client.CoreV1().Pods("default")
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: labels}, Spec: podSpec()}
	p, err := cs.Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "192.168.1.10"}
	_, err = cs.UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

// parallel runs f(0..n-1) on workers goroutines and fails on the first error.
func parallel(b *testing.B, workers, n int, f func(i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range n {
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			b.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}
