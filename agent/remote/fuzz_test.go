package remote

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// recordSink keeps what the validator gave it.
type recordSink struct {
	mu       sync.Mutex
	nodes    map[string]schema.Node
	ids      map[identity.NumericIdentity]identity.Labels
	ips      map[netip.Prefix]schema.IPEntry
	services map[string]schema.ClusterService
}

func newRecordSink() *recordSink {
	return &recordSink{nodes: map[string]schema.Node{}, ids: map[identity.NumericIdentity]identity.Labels{},
		ips: map[netip.Prefix]schema.IPEntry{}, services: map[string]schema.ClusterService{}}
}

func (s *recordSink) UpsertNode(_ string, n schema.Node) {
	s.mu.Lock()
	s.nodes[n.Name] = n
	s.mu.Unlock()
}
func (s *recordSink) DeleteNode(_, name string) { s.mu.Lock(); delete(s.nodes, name); s.mu.Unlock() }
func (s *recordSink) UpsertIdentity(_ string, id identity.NumericIdentity, l identity.Labels) {
	s.mu.Lock()
	s.ids[id] = l
	s.mu.Unlock()
}
func (s *recordSink) DeleteIdentity(_ string, id identity.NumericIdentity) {
	s.mu.Lock()
	delete(s.ids, id)
	s.mu.Unlock()
}
func (s *recordSink) UpsertIP(_ string, p netip.Prefix, e schema.IPEntry) {
	s.mu.Lock()
	s.ips[p] = e
	s.mu.Unlock()
}
func (s *recordSink) DeleteIP(_ string, p netip.Prefix) { s.mu.Lock(); delete(s.ips, p); s.mu.Unlock() }
func (s *recordSink) UpsertService(_ string, cs schema.ClusterService) {
	s.mu.Lock()
	s.services[cs.Namespace+"/"+cs.Name] = cs
	s.mu.Unlock()
}
func (s *recordSink) DeleteService(_, ns, name string) {
	s.mu.Lock()
	delete(s.services, ns+"/"+name)
	s.mu.Unlock()
}
func (s *recordSink) Drain(string) {}

// fuzzClaims: the local cluster owns 10.1.0.0/16 and fd00:1::/48, and
// nodes 192.168.1.10 and 2001:db8:1::10.
type fuzzClaims struct{}

func (fuzzClaims) PodCIDROwner(_ string, p netip.Prefix) (string, bool) {
	return "cluster1", netip.MustParsePrefix("10.1.0.0/16").Overlaps(p) || netip.MustParsePrefix("fd00:1::/48").Overlaps(p)
}
func (fuzzClaims) NodeIPOwner(_ string, ip netip.Addr) (string, bool) {
	return "cluster1", ip == netip.MustParseAddr("192.168.1.10") || ip == netip.MustParseAddr("2001:db8:1::10")
}

// fuzzVictimNodes are the local cluster's node addresses.
var fuzzVictimNodes = []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("2001:db8:1::10")}

// fuzzIPv6 builds an IPv6 address of the fuzz mesh from two bytes: in
// fd00:<a>::/32 (the peer's recorded fd00:2::/48, the local cluster's
// fd00:1::/48, others) or a special range.
func fuzzIPv6(a, b byte) string {
	switch a % 8 {
	case 0:
		return "::1"
	case 1:
		return fmt.Sprintf("fe80::%x", b)
	case 2:
		return fmt.Sprintf("ff02::%x", b)
	case 3:
		return fmt.Sprintf("2001:db8:%x::10", b%4)
	}
	return fmt.Sprintf("fd00:%x:0:%x::%x", a%4, b%4, b)
}

// FuzzRemotePath writes random sequences of keys and values of every kind
// (built from the fuzzer's bytes, half-valid by construction, or raw) as a
// hostile peer would, and checks after each write the invariants of what
// the validator accepted: nothing outside the peer's recorded pod CIDRs
// or the rest of the mesh, no foreign identity or label, every ip entry
// and backend held by one of the peer's accepted nodes (its host an
// address of that node), and nothing the peer deleted.
func FuzzRemotePath(f *testing.F) {
	f.Add([]byte{0, 1, 10, 2, 1, 0, 24, 192, 168, 2, 10, 2, 3, 10, 2, 1, 5, 0, 3, 1, 4, 10, 2, 1, 5}, "k8s:app=x;k8s:io.cilium.k8s.policy.cluster=cluster2;")
	f.Add([]byte{0, 2, 0, 0, 0, 0, 0, 127, 0, 0, 1, 2, 9, 127, 0, 0, 1, 1, 6, 7}, "reserved:host;")
	f.Add([]byte{5, 1, 2, 1, 0, 1, 3, 2, 10, 6, 6, 1, 3, 2, 1, 0, 7, 6, 1, 1, 5}, "k8s:app=x;k8s:io.cilium.k8s.policy.cluster=cluster2;")
	f.Fuzz(func(t *testing.T, ops []byte, raw string) {
		layout, _ := identity.NewLayout(255)
		sink := newRecordSink()
		v := newValidator("cluster2", 2, layout, schema.DefaultPaths(), sink, newRejections("cluster2", slog.New(slog.DiscardHandler), nil))
		v.trust = Trust{ClusterID: 2, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd00:2::/48")}}
		v.claims = fuzzClaims{}
		p := v.paths
		deleted := map[string]bool{}
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		for steps := 0; len(ops) > 0 && steps < 64; steps++ {
			op := next()
			var key, value string
			switch op % 8 {
			case 0: // node
				name := fmt.Sprint("n", next()%4)
				key = p.Node("cluster2", name)
				value = fmt.Sprintf(`{"Name":%q,"Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":"%d.%d.%d.%d"}],`+
					`"IPv4AllocCIDR":{"IP":"%d.%d.%d.0","Mask":"%s"},"ClusterID":%d}`, name, next(), next(), next(), next(),
					next(), next(), next(), []string{"////AA==", "//8AAA==", "AAAAAA==", "/wAAAA=="}[next()%4], 2+next()%2)
			case 1: // ip entry
				ip := fmt.Sprintf("%d.%d.%d.%d", next(), next(), next(), next())
				key = p.IPDefaultPrefix() + ip
				value = fmt.Sprintf(`{"IP":%q,"Mask":null,"HostIP":"%d.%d.%d.%d","ID":%d,"Key":0,"Metadata":"","K8sNamespace":"default","K8sPodName":"p"}`,
					ip, next(), next(), next(), next(), []uint32{131073, 131074, 65537, 2, 1}[next()%5])
			case 2: // identity
				id := []uint32{131073, 131074, 65537, 2}[next()%4]
				key = p.Identity(id)
				value = []string{raw, "k8s:app=x;k8s:io.cilium.k8s.policy.cluster=cluster2;", "k8s:app=x;k8s:io.cilium.k8s.policy.cluster=cluster2;reserved:host;",
					"k8s:io.cilium.k8s.policy.cluster=cluster1;"}[next()%4]
			case 3: // service
				key = p.Service("cluster2", "default", "svc")
				value = fmt.Sprintf(`{"cluster":"cluster2","namespace":"default","name":"svc","frontends":{},"backends":{"%d.%d.%d.%d":{"http":{"Protocol":"TCP","Port":80}}},`+
					`"labels":{},"selector":{},"includeExternal":true,"shared":true,"clusterID":2}`, next(), next(), next(), next())
			case 4: // a delete, or a raw value under a key
				kinds := []string{p.Node("cluster2", fmt.Sprint("n", next()%4)), p.IPDefaultPrefix() + fmt.Sprintf("10.2.%d.%d", next()%4, next()%4), p.Identity(131073), p.Service("cluster2", "default", "svc")}
				key = kinds[next()%4]
				if next()%2 == 0 {
					value = raw
				}
			case 5: // a dual-stack or IPv6-only node
				name := fmt.Sprint("n", next()%4)
				key = p.Node("cluster2", name)
				cidr := fmt.Sprintf(`{"IP":"fd00:%x:0:%x::","Mask":"%s"}`, next()%4, next()%4,
					[]string{"//////////8AAAAAAAAAAA==", "////////AAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAA==", "/wAAAAAAAAAAAAAAAAAAAA=="}[next()%4])
				v4 := ""
				if next()%2 == 0 {
					v4 = fmt.Sprintf(`"IPv4AllocCIDR":{"IP":"10.2.%d.0","Mask":"////AA=="},`, next()%4)
				}
				value = fmt.Sprintf(`{"Name":%q,"Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":%q},{"Type":"InternalIP","IP":"192.168.2.%d"}],`+
					`%s"IPv6AllocCIDR":%s,"ClusterID":2}`, name, fuzzIPv6(next(), next()), next(), v4, cidr)
			case 6: // an IPv6 ip entry, its host of either family
				ip := fuzzIPv6(next(), next())
				key = p.IPDefaultPrefix() + ip
				host := fuzzIPv6(next(), next())
				if next()%2 == 0 {
					host = fmt.Sprintf("192.168.%d.%d", next()%4, next())
				}
				value = fmt.Sprintf(`{"IP":%q,"Mask":null,"HostIP":%q,"ID":%d,"Key":0,"Metadata":"","K8sNamespace":"default","K8sPodName":"p"}`,
					ip, host, []uint32{131073, 131074, 65537, 2, 1}[next()%5])
			case 7: // a service with an IPv6 and an IPv4 backend
				key = p.Service("cluster2", "default", "svc")
				value = fmt.Sprintf(`{"cluster":"cluster2","namespace":"default","name":"svc","frontends":{},"backends":{%q:{"http":{"Protocol":"TCP","Port":80}},`+
					`"10.2.%d.%d":{"http":{"Protocol":"TCP","Port":80}}},"labels":{},"selector":{},"includeExternal":true,"shared":true,"clusterID":2}`,
					fuzzIPv6(next(), next()), next()%4, next())
			}
			up, del := v.upsertNode, v.deleteNode
			switch {
			case strings.HasPrefix(key, p.IPDefaultPrefix()):
				up, del = v.upsertIP, v.deleteIP
			case strings.HasPrefix(key, p.IdentityIDPrefix()):
				up, del = v.upsertIdentity, v.deleteIdentity
			case strings.HasPrefix(key, p.ServicesPrefix()):
				up, del = v.upsertService, v.deleteService
			}
			if value == "" {
				del(key)
				deleted[key] = true
			} else {
				up(key, []byte(value))
				delete(deleted, key)
			}
			checkInvariants(t, v, sink, deleted)
		}
	})
}

func checkInvariants(t *testing.T, v *validator, s *recordSink, deleted map[string]bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	own := []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd00:2::/48")}
	inOwn := func(p netip.Prefix) bool {
		for _, o := range own {
			if o.Bits() <= p.Bits() && o.Contains(p.Addr()) {
				return true
			}
		}
		return false
	}
	type holder struct {
		cidr  netip.Prefix
		addrs []netip.Addr
	}
	var held []holder
	for name, n := range s.nodes {
		if deleted[v.paths.Node("cluster2", name)] {
			t.Fatalf("deleted node %s still accepted", name)
		}
		var addrs []netip.Addr
		for _, a := range n.IPAddresses {
			ip, _ := netip.AddrFromSlice(a.IP)
			ip = ip.Unmap()
			if slices.Contains(fuzzVictimNodes, ip) || ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() {
				t.Fatalf("node %s accepted with address %v", name, ip)
			}
			addrs = append(addrs, ip)
		}
		for _, c := range n.PodCIDRs() {
			if !inOwn(c) {
				t.Fatalf("node %s accepted with pod CIDR %v", name, c)
			}
			held = append(held, holder{c, addrs})
		}
	}
	holds := func(p netip.Prefix, host netip.Addr) bool {
		for _, h := range held {
			if h.cidr.Bits() <= p.Bits() && h.cidr.Contains(p.Addr()) {
				if !host.IsValid() {
					return true
				}
				for _, a := range h.addrs {
					if a == host {
						return true
					}
				}
			}
		}
		return false
	}
	for p, e := range s.ips {
		if deleted[v.paths.IPDefaultPrefix()+p.Addr().String()] {
			t.Fatalf("deleted ip entry %v still accepted", p)
		}
		host, _ := netip.AddrFromSlice(e.HostIP)
		if !inOwn(p) || !holds(p, host.Unmap()) {
			t.Fatalf("ip entry %v (host %v) accepted outside the peer's nodes", p, host)
		}
		if id := identity.NumericIdentity(e.ID); !v.layout.Owns(2, id) || identity.IsReserved(id) {
			t.Fatalf("ip entry %v accepted with identity %d", p, id)
		}
	}
	for id, l := range s.ids {
		if !v.layout.Owns(2, id) {
			t.Fatalf("identity %d accepted outside the range", id)
		}
		for lb := range l.All() {
			if lb.Source != identity.SourceK8s || lb.Key == identity.ClusterLabelKey && lb.Value != "cluster2" {
				t.Fatalf("identity %d accepted with label %s", id, lb)
			}
		}
	}
	for k, cs := range s.services {
		for ip := range cs.Backends {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				t.Fatalf("service %s: backend %q accepted", k, ip)
			}
			a = a.Unmap()
			inNode := holds(netip.PrefixFrom(a, a.BitLen()), netip.Addr{})
			for _, n := range s.nodes {
				for _, na := range n.IPAddresses {
					if x, _ := netip.AddrFromSlice(na.IP); x.Unmap() == a {
						inNode = true
					}
				}
			}
			if !inNode {
				t.Fatalf("service %s: backend %v accepted outside the peer's nodes", k, a)
			}
		}
	}
}
