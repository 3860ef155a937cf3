package remote

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// While a node of the peer flaps (ordinary churn), deletes of ip entries
// on it race with the re-checks of its node events: no deleted entry may
// come back. (The re-check used to call the sink after releasing the
// lock, so a delete could reach the sink first and the re-check then
// wrote the entry back.)
func TestDeletedEntriesStayDeletedUnderNodeFlaps(t *testing.T) {
	layout, _ := identity.NewLayout(255)
	for round := range 20 {
		sink := newRecordSink()
		v := newValidator("cluster2", 2, layout, schema.DefaultPaths(), sink, newRejections("cluster2", slog.New(slog.DiscardHandler), nil))
		p := v.paths
		node := []byte(`{"Name":"n0","Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":"192.168.2.10"}],"IPv4AllocCIDR":{"IP":"10.2.0.0","Mask":"////AA=="},"ClusterID":2}`)
		v.upsertNode(p.Node("cluster2", "n0"), node)
		keys := make([]string, 0, 250)
		for i := range 250 {
			ip := fmt.Sprintf("10.2.0.%d", i+1)
			keys = append(keys, p.IPDefaultPrefix()+ip)
			v.upsertIP(keys[i], fmt.Appendf(nil, `{"IP":%q,"Mask":null,"HostIP":"192.168.2.10","ID":131073,"Key":0,"Metadata":""}`, ip))
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Go(func() { // the node flaps
			for {
				select {
				case <-stop:
					return
				default:
				}
				v.deleteNode(p.Node("cluster2", "n0"))
				v.upsertNode(p.Node("cluster2", "n0"), node)
			}
		})
		for _, k := range keys {
			v.deleteIP(k)
		}
		close(stop)
		wg.Wait()
		sink.mu.Lock()
		left := len(sink.ips)
		sink.mu.Unlock()
		if left != 0 || v.ips.len() != 0 || v.quarantine.len() != 0 {
			t.Fatalf("round %d: %d deleted entries came back in the sink (validator: %d accepted, %d quarantined)", round, left, v.ips.len(), v.quarantine.len())
		}
	}
}
