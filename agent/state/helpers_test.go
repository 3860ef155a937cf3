package state

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

func newState(t testing.TB) *State {
	t.Helper()
	s, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func labels(t testing.TB, ss ...string) identity.Labels {
	t.Helper()
	ls, err := identity.ParseLabels(ss...)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func node(cluster, name string) schema.Node {
	return schema.Node{Name: name, Cluster: cluster, IPv4AllocCIDR: schema.NewCIDR(netip.MustParsePrefix("10.0.0.0/24"))}
}

func service(cluster, ns, name string, backends ...string) schema.ClusterService {
	cs := schema.ClusterService{Cluster: cluster, Namespace: ns, Name: name, Shared: true, ClusterID: 2,
		Backends: map[string]schema.PortConfiguration{}}
	for _, b := range backends {
		cs.Backends[b] = schema.PortConfiguration{"http": {Protocol: schema.ProtocolTCP, Port: 80}}
	}
	return cs
}

func ipEntry(id uint32, host string) schema.IPEntry {
	return schema.IPEntry{ID: id, HostIP: net.ParseIP(host), K8sNamespace: "ns", K8sPodName: "pod"}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// dump lists every row of the four data tables as sorted strings.
func dump(t testing.TB, sn *Snapshot) []string {
	t.Helper()
	var out []string
	for _, r := range sn.IPCache() {
		out = append(out, fmt.Sprintf("ip %s %s id=%d host=%s", r.Cluster, r.Prefix, r.ID, r.HostIP))
	}
	for _, table := range []string{TableIdentities, TableNodes, TableServices} {
		it, err := sn.Txn().Get(table, IndexID)
		if err != nil {
			t.Fatal(err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			switch r := raw.(type) {
			case *idBlock:
				for _, r := range r.rows {
					out = append(out, fmt.Sprintf("identity %s %d %s", r.Cluster, r.ID, r.LabelsKey))
				}
			case *NodeRow:
				out = append(out, fmt.Sprintf("node %s %s cidrs=%v", r.Cluster, r.Name, r.Node.PodCIDRs()))
			case *ServiceRow:
				out = append(out, fmt.Sprintf("service %s %s/%s backends=%d", r.Cluster, r.Namespace, r.Name, len(r.Service.Backends)))
			}
		}
	}
	sort.Strings(out)
	return out
}

// checkPrefixLens verifies that the prefix lengths table lists exactly the
// lengths of the ipcache rows.
func checkPrefixLens(t testing.TB, sn *Snapshot) {
	t.Helper()
	want := map[prefixLen]bool{}
	for _, e := range sn.IPCache() {
		want[prefixLen{Is6: e.Prefix.Addr().Is6(), Bits: uint8(e.Prefix.Bits())}] = true
	}
	got := map[prefixLen]bool{}
	for _, pl := range collect[prefixLen](sn.txn, tablePrefixLens, IndexID) {
		got[pl] = true
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("prefix lengths (-rows +table):\n%s", d)
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(10 * time.Millisecond):
		return false
	}
}
