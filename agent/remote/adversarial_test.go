package remote_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// The mesh around the hostile peer cluster2 (ID 2, recorded pod CIDR
// 10.2.0.0/16): the victim cluster1 (pod CIDR 10.1.0.0/16, node
// 192.168.1.10) and another peer cluster3 (10.3.0.0/16, node 192.168.3.10,
// WireGuard key key3).
const key3 = "M2tleS1vZi1jbHVzdGVyMy1ub2RlLTEtMzJieXRlcyE="

type meshClaims struct{}

func (meshClaims) PodCIDROwner(peer string, p netip.Prefix) (string, bool) {
	for owner, c := range map[string]netip.Prefix{"cluster1": netip.MustParsePrefix("10.1.0.0/16"), "cluster3": netip.MustParsePrefix("10.3.0.0/16")} {
		if owner != peer && c.Overlaps(p) {
			return owner, true
		}
	}
	return "", false
}

func (meshClaims) NodeIPOwner(peer string, ip netip.Addr) (string, bool) {
	switch ip.String() {
	case "192.168.1.10":
		return "cluster1", true
	case "192.168.3.10":
		return "cluster3", true
	}
	return "", false
}

func (meshClaims) WireGuardKeyOwner(peer, key string) (string, bool) {
	if key == key3 {
		return "cluster3/n1", true
	}
	return "", false
}

func nodeJSON(name, ip, cidr string, extra string) string {
	p := netip.MustParsePrefix(cidr)
	mask := "////AA=="
	switch p.Bits() {
	case 0:
		mask = "AAAAAA=="
	case 1:
		mask = "gAAAAA=="
	case 16:
		mask = "//8AAA=="
	}
	return `{"Name":"` + name + `","Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":"` + ip + `"}],` +
		`"IPv4AllocCIDR":{"IP":"` + p.Addr().String() + `","Mask":"` + mask + `"}` + extra + `,"ClusterID":2}`
}

func ipEntryOn(ip, host string, id uint32, ns, pod string) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return fmt.Sprintf(`{"IP":%s,"Mask":null,"HostIP":%s,"ID":%d,"Key":0,"Metadata":"","K8sNamespace":%s,"K8sPodName":%s}`, q(ip), q(host), id, q(ns), q(pod))
}

func serviceWith(backends ...string) string {
	var b []string
	for _, ip := range backends {
		b = append(b, `"`+ip+`":{"http":{"Protocol":"TCP","Port":80}}`)
	}
	return `{"cluster":"cluster2","namespace":"default","name":"rebel-base","frontends":{},"backends":{` + strings.Join(b, ",") +
		`},"labels":{},"selector":{},"includeExternal":true,"shared":true,"clusterID":2}`
}

// Every attack a hostile peer can write into its own etcd, each against an
// honest baseline (node n1 10.2.1.0/24 at 192.168.2.10, identity 131073,
// pod 10.2.1.5, a service on it): the attack's keys never reach the sink,
// the honest state stays, and the rejection is counted by reason.
func TestHostilePeer(t *testing.T) {
	type put struct{ key, value string }
	cases := []struct {
		name    string
		attack  func(p *meshtest.Peer) []put
		absent  []string // sink keys that must not appear
		reasons []string // "kind: reason" counted at least once ("a|b": either)
	}{}
	paths := schema.DefaultPaths()
	nodeCIDR := func(name, cidr string, ip string) func(*meshtest.Peer) []put {
		return func(*meshtest.Peer) []put {
			addr, _, _ := strings.Cut(cidr, "/")
			inside := netip.MustParseAddr(addr).Next().Next().String()
			return []put{{paths.Node("cluster2", name), nodeJSON(name, ip, cidr, "")},
				{paths.IPDefaultPrefix() + inside, ipEntryOn(inside, ip, 131073, "default", "evil")}}
		}
	}
	for _, c := range []struct{ name, cidr, inside string }{
		{"pod CIDR of the victim", "10.1.1.0/24", "10.1.1.2"},
		{"pod CIDR of another peer", "10.3.1.0/24", "10.3.1.2"},
		{"pod CIDR the default route", "0.0.0.0/0", "0.0.0.2"},
		{"pod CIDR half the internet", "0.0.0.0/1", "0.0.0.2"},
		{"pod CIDR loopback", "127.0.0.0/24", "127.0.0.2"},
		{"pod CIDR link-local", "169.254.1.0/24", "169.254.1.2"},
		{"pod CIDR multicast", "224.0.0.0/24", "224.0.0.2"},
		{"pod CIDR outside the recorded ones", "10.9.1.0/24", "10.9.1.2"},
	} {
		cases = append(cases, struct {
			name    string
			attack  func(p *meshtest.Peer) []put
			absent  []string
			reasons []string
		}{c.name, nodeCIDR("evil", c.cidr, "192.168.2.66"), []string{"node cluster2/evil", "ip cluster2/" + c.inside + "/32"},
			[]string{"nodes: " + remote.ReasonBadPodCIDR}})
	}
	add := func(name string, attack func(*meshtest.Peer) []put, absent []string, reasons ...string) {
		cases = append(cases, struct {
			name    string
			attack  func(p *meshtest.Peer) []put
			absent  []string
			reasons []string
		}{name, attack, absent, reasons})
	}
	puts := func(kv ...string) func(*meshtest.Peer) []put {
		return func(*meshtest.Peer) []put {
			var out []put
			for i := 0; i < len(kv); i += 2 {
				out = append(out, put{kv[i], kv[i+1]})
			}
			return out
		}
	}
	for _, l := range []string{"reserved:host=", "reserved:world=", "reserved:remote-node=", "reserved:kube-apiserver=", "reserved:health=",
		"reserved:ingress=", "reserved:init=", "reserved:unmanaged=", "any:app=x", "unspec:app=x", "cidr:10.0.0.0/8="} {
		add("identity with "+l, puts(paths.Identity(131080), labels+l+";"), []string{"identity cluster2/131080"},
			"identities: "+remote.ReasonForeignLabel+"|identities: "+remote.ReasonMalformed)
	}
	for _, src := range []string{"reserved", "unspec", "any"} {
		add("cluster label of source "+src, puts(paths.Identity(131081), "k8s:app=x;"+src+":io.cilium.k8s.policy.cluster=cluster2;"),
			[]string{"identity cluster2/131081"}, "identities: "+remote.ReasonForeignLabel)
	}
	add("honest identity rewritten with reserved:host", puts(paths.Identity(131073), labels+"reserved:host=;"),
		[]string{"identity cluster2/131073"}, "identities: "+remote.ReasonForeignLabel)
	for _, host := range []string{"192.168.1.10", "192.168.3.10", "127.0.0.1", "192.168.2.11", "10.1.1.1"} {
		add("ip entry with host "+host, puts(paths.IPDefaultPrefix()+"10.2.1.9", ipEntryOn("10.2.1.9", host, 131073, "default", "evil")),
			[]string{"ip cluster2/10.2.1.9/32"}, "ip: "+remote.ReasonBadHostIP)
	}
	for _, ip := range []string{"192.168.1.10", "192.168.3.10", "127.0.0.1", "10.1.1.7"} {
		add("node address "+ip, puts(paths.Node("cluster2", "evil"), nodeJSON("evil", ip, "10.2.9.0/24", "")),
			[]string{"node cluster2/evil"}, "nodes: "+remote.ReasonBadNodeAddress)
	}
	for _, v6 := range []struct{ name, ip, mask string }{
		{"::/0", "::", "AAAAAAAAAAAAAAAAAAAAAA=="},
		{"fd00::/8", "fd00::", "/wAAAAAAAAAAAAAAAAAAAA=="},
		{"fe80::/64", "fe80::", "//////////8AAAAAAAAAAA=="},
	} {
		add("IPv6 pod CIDR "+v6.name, puts(paths.Node("cluster2", "evil"), nodeJSON("evil", "192.168.2.66", "10.2.9.0/24",
			`,"IPv6AllocCIDR":{"IP":"`+v6.ip+`","Mask":"`+v6.mask+`"}`)), []string{"node cluster2/evil"}, "nodes: "+remote.ReasonBadPodCIDR)
	}
	add("node with the all-zero WireGuard key", puts(paths.Node("cluster2", "evil"),
		nodeJSON("evil", "192.168.2.66", "10.2.9.0/24", `,"WireguardPubKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="`)),
		[]string{"node cluster2/evil"}, "nodes: "+remote.ReasonBadWireGuardKey)
	add("node with another cluster's WireGuard key", puts(paths.Node("cluster2", "evil"),
		nodeJSON("evil", "192.168.2.66", "10.2.9.0/24", `,"WireguardPubKey":"`+key3+`"`)),
		[]string{"node cluster2/evil"}, "nodes: "+remote.ReasonBadWireGuardKey)
	for _, b := range []string{"10.1.1.5", "192.168.1.10", "8.8.8.8", "10.3.1.5", "127.0.0.1"} {
		// The honest backend stays (= 1 backend), the other is left out.
		add("service backend "+b, puts(paths.Service("cluster2", "default", "rebel-base"), serviceWith("10.2.1.5", b)),
			[]string{"service cluster2/default/rebel-base = 2"}, "services: "+remote.ReasonBadBackend)
	}
	for _, n := range []string{"evil\nname", "evil\x1b[31m", strings.Repeat("x", 20000), "UPPER"} {
		add(fmt.Sprintf("pod name %.12q", n), puts(paths.IPDefaultPrefix()+"10.2.1.9", ipEntryOn("10.2.1.9", "192.168.2.10", 131073, "default", n)),
			[]string{"ip cluster2/10.2.1.9/32"}, "ip: "+remote.ReasonBadName)
		add(fmt.Sprintf("namespace %.12q", n), puts(paths.IPDefaultPrefix()+"10.2.1.9", ipEntryOn("10.2.1.9", "192.168.2.10", 131073, n, "pod")),
			[]string{"ip cluster2/10.2.1.9/32"}, "ip: "+remote.ReasonBadName)
	}
	add("out-of-CIDR entry with a 20 KB pod name (not kept)", puts(paths.IPDefaultPrefix()+"10.2.200.9",
		ipEntryOn("10.2.200.9", "192.168.2.10", 131073, "default", strings.Repeat("x", 20000))),
		[]string{"ip cluster2/10.2.200.9/32"}, "ip: "+remote.ReasonBadName)

	honest := []string{"identity cluster2/131073", "ip cluster2/10.2.1.5/32", "node cluster2/n1", "service cluster2/default/rebel-base"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := meshtest.StartPeer(t, "cluster2", 2)
			p.Put(t, paths.Node("cluster2", "n1"), nodeJSON("n1", "192.168.2.10", "10.2.1.0/24", ""))
			p.Put(t, paths.Identity(131073), labels)
			p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntryOn("10.2.1.5", "192.168.2.10", 131073, "default", "rebel-base"))
			p.Put(t, paths.Service("cluster2", "default", "rebel-base"), serviceWith("10.2.1.5"))
			attack := c.attack(p)
			for _, a := range attack {
				p.Put(t, a.key, a.value)
			}
			p.Synced()
			sink := newMemSink()
			st, err := state.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := remote.New(remote.Config{Name: "cluster2", Client: p.Env.ClientConfig(t, kvstore.RemoteUser), Paths: p.Env.Paths,
				LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255, Registry: remote.NewRegistry("cluster1", 1),
				Sink: teeSink{sink, st.RemoteSink()}, Backoff: fast,
				Trust:  remote.Trust{ClusterID: 2, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}},
				Claims: meshClaims{}})
			if err != nil {
				t.Fatal(err)
			}
			meshtest.Go(t, cl.Run)
			eventually(t, "peer ready with its rejections counted", func() bool {
				st := cl.Status()
				for _, r := range c.reasons {
					if !slices.ContainsFunc(strings.Split(r, "|"), func(r string) bool { return st.Rejected[r] > 0 }) {
						return false
					}
				}
				return st.Ready
			})
			checkDownstream(t, st.Snapshot())
			got := sink.keys()
			for _, k := range c.absent {
				if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, k+" ") || s == k }) && !strings.HasSuffix(k, "= 2") ||
					slices.Contains(got, k) {
					t.Errorf("the attack reached the sink: %s in %v", k, got)
				}
			}
			for _, k := range honest {
				if slices.Contains(c.absent, k) {
					continue
				}
				if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, k+" ") }) {
					t.Errorf("honest %s missing after the attack: %v", k, got)
				}
			}
		})
	}
}

// teeSink hands everything to two sinks: the test's record and the
// agent's real state.
type teeSink [2]remote.Sink

func (t teeSink) UpsertNode(c string, n schema.Node) { t[0].UpsertNode(c, n); t[1].UpsertNode(c, n) }
func (t teeSink) DeleteNode(c, n string)             { t[0].DeleteNode(c, n); t[1].DeleteNode(c, n) }
func (t teeSink) UpsertIdentity(c string, id identity.NumericIdentity, l identity.Labels) {
	t[0].UpsertIdentity(c, id, l)
	t[1].UpsertIdentity(c, id, l)
}
func (t teeSink) DeleteIdentity(c string, id identity.NumericIdentity) {
	t[0].DeleteIdentity(c, id)
	t[1].DeleteIdentity(c, id)
}
func (t teeSink) UpsertIP(c string, p netip.Prefix, e schema.IPEntry) {
	t[0].UpsertIP(c, p, e)
	t[1].UpsertIP(c, p, e)
}
func (t teeSink) DeleteIP(c string, p netip.Prefix) { t[0].DeleteIP(c, p); t[1].DeleteIP(c, p) }
func (t teeSink) UpsertService(c string, cs schema.ClusterService) {
	t[0].UpsertService(c, cs)
	t[1].UpsertService(c, cs)
}
func (t teeSink) DeleteService(c, ns, n string) {
	t[0].DeleteService(c, ns, n)
	t[1].DeleteService(c, ns, n)
}
func (t teeSink) Drain(c string) { t[0].Drain(c); t[1].Drain(c) }

// checkDownstream asserts the invariants of the agent's state after any
// attack of cluster2: nothing of cluster2 outside its recorded pod CIDRs,
// its identity range, its own k8s labels, or its own nodes' addresses.
func checkDownstream(t *testing.T, sn *state.Snapshot) {
	t.Helper()
	for _, f := range downstreamViolations(sn) {
		t.Errorf("downstream, in the agent's state: %s", f)
	}
}

func downstreamViolations(sn *state.Snapshot) []string {
	own := netip.MustParsePrefix("10.2.0.0/16")
	layout, _ := identity.NewLayout(255)
	var bad []string
	inOwn := func(p netip.Prefix) bool { return own.Bits() <= p.Bits() && own.Contains(p.Addr()) }
	addrs := map[netip.Addr]bool{}
	for _, n := range sn.Nodes("cluster2") {
		for _, c := range n.Node.PodCIDRs() {
			if !inOwn(c) {
				bad = append(bad, fmt.Sprintf("node %s has pod CIDR %v", n.Name, c))
			}
		}
		for _, a := range n.Node.IPAddresses {
			ip, _ := netip.AddrFromSlice(a.IP)
			ip = ip.Unmap()
			addrs[ip] = true
			if s := ip.String(); s == "192.168.1.10" || s == "192.168.3.10" || ip.IsLoopback() {
				bad = append(bad, fmt.Sprintf("node %s has address %v", n.Name, ip))
			}
		}
		if n.Node.WireguardPubKey == key3 || n.Node.WireguardPubKey == "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" {
			bad = append(bad, fmt.Sprintf("node %s has WireGuard key %s", n.Name, n.Node.WireguardPubKey))
		}
	}
	for _, e := range sn.IPCache() {
		if e.Cluster != "cluster2" {
			continue
		}
		if !inOwn(e.Prefix) {
			bad = append(bad, fmt.Sprintf("ipcache %v (identity %d)", e.Prefix, e.ID))
		}
		if !layout.Owns(2, e.ID) || identity.IsReserved(e.ID) {
			bad = append(bad, fmt.Sprintf("ipcache %v has identity %d", e.Prefix, e.ID))
		}
		if e.HostIP.IsValid() && !addrs[e.HostIP] {
			bad = append(bad, fmt.Sprintf("ipcache %v has host %v, no node of cluster2", e.Prefix, e.HostIP))
		}
	}
	for _, id := range sn.Identities() {
		if id.Cluster != "cluster2" {
			continue
		}
		for l := range id.Labels.All() {
			if l.Source != identity.SourceK8s || l.Key == identity.ClusterLabelKey && l.Value != "cluster2" {
				bad = append(bad, fmt.Sprintf("identity %d has label %s", id.ID, l))
			}
		}
	}
	for _, svc := range sn.ServiceCopies("default", "rebel-base") {
		if svc.Cluster != "cluster2" {
			continue
		}
		for ip := range svc.Service.Backends {
			if a, err := netip.ParseAddr(ip); err != nil || !own.Contains(a.Unmap()) {
				bad = append(bad, fmt.Sprintf("service backend %s", ip))
			}
		}
	}
	return bad
}
