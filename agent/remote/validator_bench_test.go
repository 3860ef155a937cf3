package remote

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

type discardSink struct{}

func (discardSink) UpsertNode(string, schema.Node)                                   {}
func (discardSink) DeleteNode(string, string)                                        {}
func (discardSink) UpsertIdentity(string, identity.NumericIdentity, identity.Labels) {}
func (discardSink) DeleteIdentity(string, identity.NumericIdentity)                  {}
func (discardSink) UpsertIP(string, netip.Prefix, schema.IPEntry)                    {}
func (discardSink) DeleteIP(string, netip.Prefix)                                    {}
func (discardSink) UpsertService(string, schema.ClusterService)                      {}
func (discardSink) DeleteService(string, string, string)                             {}
func (discardSink) Drain(string)                                                     {}

func benchValidator(tb testing.TB) *validator {
	layout, err := identity.NewLayout(255)
	if err != nil {
		tb.Fatal(err)
	}
	return newValidator("cluster2", 2, layout, schema.DefaultPaths(), discardSink{}, newRejections("cluster2", slog.New(slog.DiscardHandler), nil))
}

func benchNode(i int) string {
	return fmt.Sprintf(`{"Name":"n%d","Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":"192.168.%d.%d"}],`+
		`"IPv4AllocCIDR":{"IP":"10.%d.%d.0","Mask":"////AA=="},"ClusterID":2}`, i, i/250, i%250+1, 2+i/250, i%250)
}

// fill gives v nodes n0..n(nodes-1) (10.<2+i/250>.<i%250>.0/24) and entries ip
// entries spread over them.
func fill(tb testing.TB, v *validator, nodes, entries int) {
	p := v.paths
	for i := range nodes {
		v.upsertNode(p.Node("cluster2", fmt.Sprint("n", i)), []byte(benchNode(i)))
	}
	for j := range entries {
		i := j % nodes
		ip := fmt.Sprintf("10.%d.%d.%d", 2+i/250, i%250, j/nodes+1)
		v.upsertIP(p.IPDefaultPrefix()+ip, fmt.Appendf(nil, `{"IP":%q,"Mask":null,"HostIP":"192.168.%d.%d","ID":131073,"Key":0,"Metadata":"","K8sNamespace":"default","K8sPodName":"pod-%d"}`,
			ip, i/250, i%250+1, j))
	}
	if got := v.ips.len(); got != entries {
		tb.Fatalf("%d entries accepted, want %d", got, entries)
	}
}

// BenchmarkNodeEvent: one of the peer's nodes rewritten with the same pod
// CIDR, with 1,000 and with 100,000 ip entries in the validator (250 per
// node): the cost follows the entries of that node, not all of them.
func BenchmarkNodeEvent(b *testing.B) {
	per := map[int]float64{}
	for _, entries := range []int{1000, 100000} {
		b.Run(fmt.Sprint(entries), func(b *testing.B) {
			v := benchValidator(b)
			nodes := entries / 250
			fill(b, v, nodes, entries)
			key, val := v.paths.Node("cluster2", "n0"), []byte(benchNode(0))
			start := time.Now()
			n := 0
			for b.Loop() {
				v.upsertNode(key, val)
				n++
			}
			per[entries] = float64(time.Since(start).Nanoseconds()) / float64(n)
		})
	}
	if per[1000] > 0 {
		fmt.Printf("node event (same pod CIDR): %.0f ns at 1,000 entries, %.0f ns at 100,000: ratio %.2f\n", per[1000], per[100000], per[100000]/per[1000])
	}
}

// BenchmarkRejectedMemory: the heap kept per rejected ip entry, for pod
// names of 10 bytes and of 20 KB, entries outside every node (10,000 each).
func BenchmarkRejectedMemory(b *testing.B) {
	for b.Loop() {
		per := map[int]float64{}
		for _, size := range []int{10, 20000} {
			v := benchValidator(b)
			name := strings.Repeat("x", size)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for j := range 10000 {
				ip := fmt.Sprintf("10.9.%d.%d", j/250, j%250+1)
				v.upsertIP(v.paths.IPDefaultPrefix()+ip, fmt.Appendf(nil, `{"IP":%q,"Mask":null,"HostIP":"192.168.0.1","ID":131073,"Key":0,"Metadata":"","K8sNamespace":"default","K8sPodName":%q}`, ip, name))
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			per[size] = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / 10000
			runtime.KeepAlive(v)
		}
		fmt.Printf("heap kept per rejected ip entry: %.0f bytes with 10-byte pod names, %.0f bytes with 20 KB pod names\n", per[10], per[20000])
	}
}
