//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/clustermesh/clustermesh/e2e/bed"
)

// BenchmarkPropagation measures, on the bed, how long a new pod becoming
// Ready in cluster1 takes to reach the ipcache BPF map of an agent in
// cluster2 (kubelet's status write → cluster1's clustermesh-apiserver →
// its etcd → cluster2's agent → kernel), at 100 new pods per second, next
// to the raw path measured for the same pods in the same run: the delivery
// of the same status write to a client-go informer, plus an etcd put →
// watch on cluster1's etcd made when the informer saw it.
func BenchmarkPropagation(b *testing.B) {
	tb := startBed(b, nil)
	ctx := b.Context()
	c1, err := tb.AddCluster(ctx, bed.ClusterSpec{Name: "cluster1", ID: 1})
	if err != nil {
		b.Fatal(err)
	}
	c2, err := tb.AddCluster(ctx, bed.ClusterSpec{Name: "cluster2", ID: 2})
	if err != nil {
		b.Fatal(err)
	}
	if err := tb.Connect(ctx, "cluster1", "cluster2"); err != nil {
		b.Fatal(err)
	}
	kernel, err := c2.Nodes[0].KernelIPCache()
	if err != nil {
		b.Fatal(err)
	}
	defer kernel.Close()
	etcd, err := c1.EtcdClient()
	if err != nil {
		b.Fatal(err)
	}
	defer etcd.Close()

	lbl := map[string]string{"app": "bench"}
	// A first pod allocates the identity every later pod shares.
	warm, err := c1.Nodes[0].CreatePodObject(ctx, "default", "warm", lbl, netip.MustParseAddr("10.1.1.250"))
	if err != nil {
		b.Fatal(err)
	}
	if err := warm.SetRunning(ctx); err != nil {
		b.Fatal(err)
	}
	var id uint32
	if err := tb.WaitUntil(ctx, time.Minute, "the first bench pod in cluster2's kernel ipcache", func(context.Context) (bool, string) {
		e, ok, err := kernel.Lookup(netip.PrefixFrom(warm.IP, 32))
		if err != nil || !ok || e.Identity < 256 {
			return false, fmt.Sprint(e, ok, err)
		}
		id = e.Identity
		return true, ""
	}); err != nil {
		b.Fatal(err)
	}

	// An idle etcd's put -> watch, for reference.
	{
		wctx, cancel := context.WithCancel(ctx)
		watch := etcd.Watch(wctx, "bench-idle/", clientv3.WithPrefix())
		var idle []float64
		for i := range 20 {
			start := time.Now()
			if _, err := etcd.Put(ctx, fmt.Sprint("bench-idle/", i), "x"); err != nil {
				b.Fatal(err)
			}
			putDone := time.Since(start)
			<-watch
			idle = append(idle, float64(time.Since(start).Microseconds())/1000)
			if i == 0 {
				fmt.Printf("idle etcd: first put took %v\n", putDone)
			}
		}
		cancel()
		fmt.Printf("idle etcd put->watch, 20 sequential: p50 %.2f ms max %.2f ms\n", pct(idle, 50), pct(idle, 100))
	}

	round := 0
	for b.Loop() {
		round++
		const n = 200 // 100 per node, 100 per second
		type sample struct {
			t0, kernel, informer, put, watched time.Time
		}
		var mu sync.Mutex
		samples := map[string]*sample{}
		pods := make([]*bed.PodObject, 0, n)
		for i := range n {
			node := c1.Nodes[i%2]
			ip := netip.AddrFrom4([4]byte{10, 1, byte(node.Index + 1), byte(100 + i/2)})
			name := fmt.Sprintf("bench-%d-%d", round, i)
			p, err := node.CreatePodObject(ctx, "default", name, lbl, ip)
			if err != nil {
				b.Fatal(err)
			}
			pods = append(pods, p)
			samples[name] = &sample{}
		}
		// The raw path: an informer on cluster1's pods, and an etcd put →
		// watch when it delivers a pod's Ready status.
		rawPrefix := fmt.Sprintf("bench-raw/%d/", round)
		wctx, stopWatch := context.WithCancel(ctx)
		watch := etcd.Watch(wctx, rawPrefix, clientv3.WithPrefix())
		var wg sync.WaitGroup
		wg.Go(func() {
			for resp := range watch {
				now := time.Now()
				mu.Lock()
				for _, ev := range resp.Events {
					if s := samples[string(ev.Kv.Key[len(rawPrefix):])]; s != nil && s.watched.IsZero() {
						s.watched = now
					}
				}
				mu.Unlock()
			}
		})
		factory := informers.NewSharedInformerFactoryWithOptions(c1.Client, 0, informers.WithNamespace("default"),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = labels.SelectorFromSet(lbl).String() }))
		inf := factory.Core().V1().Pods().Informer()
		onPod := func(obj any) {
			pod, ok := obj.(*corev1.Pod)
			if !ok || pod.Status.PodIP == "" {
				return
			}
			now := time.Now()
			mu.Lock()
			s := samples[pod.Name]
			first := s != nil && s.informer.IsZero()
			if first {
				s.informer = now
			}
			mu.Unlock()
			if first {
				go func() {
					put := time.Now()
					if _, err := etcd.Put(wctx, rawPrefix+pod.Name, put.String()); err == nil {
						mu.Lock()
						s.put = put
						mu.Unlock()
					}
				}()
			}
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) }}); err != nil {
			b.Fatal(err)
		}
		factory.Start(wctx.Done())
		factory.WaitForCacheSync(wctx.Done())

		// The kernel side: poll cluster2's map for the pods' addresses.
		pollDone := make(chan struct{})
		wg.Go(func() {
			pending := map[netip.Addr]string{}
			for _, p := range pods {
				pending[p.IP] = p.Name
			}
			for len(pending) > 0 {
				select {
				case <-wctx.Done():
					close(pollDone)
					return
				default:
				}
				now := time.Now()
				for ip, name := range pending {
					if e, ok, _ := kernel.Lookup(netip.PrefixFrom(ip, 32)); ok && e.Identity == id {
						mu.Lock()
						if s := samples[name]; !s.t0.IsZero() {
							s.kernel = now
							delete(pending, ip)
						}
						mu.Unlock()
					}
				}
				time.Sleep(time.Millisecond)
			}
			close(pollDone)
		})
		start := time.Now()
		for i, p := range pods {
			time.Sleep(time.Until(start.Add(time.Duration(i) * 10 * time.Millisecond)))
			mu.Lock()
			samples[p.Name].t0 = time.Now()
			mu.Unlock()
			if err := p.SetRunning(ctx); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-pollDone:
		case <-time.After(2 * time.Minute):
			b.Fatal("pods did not all reach cluster2's kernel ipcache within 2 minutes")
		}
		// The last puts' watch events.
		if err := tb.WaitUntil(ctx, 30*time.Second, "every raw put seen by the watch", func(context.Context) (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			missing := 0
			for _, s := range samples {
				if s.watched.IsZero() {
					missing++
				}
			}
			return missing == 0, fmt.Sprint(missing, " missing")
		}); err != nil {
			b.Fatal(err)
		}
		stopWatch()
		wg.Wait()

		var sys, raw, infl, etc []float64
		mu.Lock()
		for name, s := range samples {
			if s.informer.IsZero() || s.put.IsZero() || s.watched.IsZero() {
				b.Fatalf("pod %s: the raw path did not complete (informer %v, put %v, watch %v)", name, s.informer, s.put, s.watched)
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			sys = append(sys, ms(s.kernel.Sub(s.t0)))
			infl = append(infl, ms(s.informer.Sub(s.t0)))
			etc = append(etc, ms(s.watched.Sub(s.put)))
			raw = append(raw, ms(s.informer.Sub(s.t0)+s.watched.Sub(s.put)))
		}
		mu.Unlock()
		fmt.Printf("propagation of %d new pods at 100/s, pod Ready in cluster1 -> cluster2's kernel ipcache: p50 %.1f ms p99 %.1f ms; "+
			"raw path (informer %.1f/%.1f ms + etcd put->watch %.1f/%.1f ms, p50/p99): p50 %.1f ms p99 %.1f ms; ratio p50 %.2f p99 %.2f\n",
			n, pct(sys, 50), pct(sys, 99), pct(infl, 50), pct(infl, 99), pct(etc, 50), pct(etc, 99), pct(raw, 50), pct(raw, 99),
			pct(sys, 50)/pct(raw, 50), pct(sys, 99)/pct(raw, 99))
		b.ReportMetric(pct(sys, 99)/pct(raw, 99), "p99-ratio")
		for _, p := range pods {
			_ = c1.Client.CoreV1().Pods("default").Delete(ctx, p.Name, metav1.DeleteOptions{})
		}
	}
}
