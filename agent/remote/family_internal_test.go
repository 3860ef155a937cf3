package remote

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// addrFamily holds the addresses of the family tests, in one address
// family. The mesh: the peer cluster2 (ID 2) with recorded pod CIDRs
// 10.2.0.0/16 and fd00:2::/48, and its node n1; the victim cluster1 (pod
// CIDRs 10.1.0.0/16 and fd00:1::/48, node 192.168.1.10 and
// 2001:db8:1::10); another peer cluster3 (10.3.0.0/16 and fd00:3::/48,
// node 192.168.3.10 and 2001:db8:3::10). Each field is named in the cases'
// templates as {field}.
type addrFamily map[string]string

var families = []struct {
	name string
	f    addrFamily
}{
	{"IPv4", addrFamily{
		"bits": "32", "minBits": "8",
		"n1CIDR": "10.2.1.0/24", "n1Addr": "192.168.2.10", "n2CIDR": "10.2.2.0/24", "n2Addr": "192.168.2.11",
		"pod": "10.2.1.5", "pod2": "10.2.2.5", "podPrefix": "10.2.1.16/28", "outside": "10.2.9.5", "wideEntry": "10.2.0.0/16",
		"innerCIDR": "10.2.1.128/25", "outerCIDR": "10.2.0.0/23", "narrowCIDR": "10.2.5.128/25", "aroundNarrow": "10.2.5.0/24",
		"victimCIDR": "10.1.1.0/24", "victimPod": "10.1.1.7", "victimNode": "192.168.1.10",
		"otherCIDR": "10.3.1.0/24", "otherNode": "192.168.3.10",
		"unrecorded": "10.9.1.0/24", "tooWide": "10.0.0.0/7", "hostBits": "10.2.1.1/24", "hostBitsAddr": "10.2.1.1", "hostBitsLen": "24",
		"loCIDR": "127.0.0.0/24", "loRange": "127.0.0.0/8", "lo": "127.0.0.1",
		"llCIDR": "169.254.1.0/24", "llRange": "169.254.0.0/16", "ll": "169.254.1.1",
		"mcCIDR": "224.0.0.0/24", "mcRange": "224.0.0.0/4", "mc": "224.0.0.1",
		"anybody": "192.168.9.9",
	}},
	{"IPv6", addrFamily{
		"bits": "128", "minBits": "32",
		"n1CIDR": "fd00:2:0:1::/64", "n1Addr": "2001:db8:2::10", "n2CIDR": "fd00:2:0:2::/64", "n2Addr": "2001:db8:2::11",
		"pod": "fd00:2:0:1::5", "pod2": "fd00:2:0:2::5", "podPrefix": "fd00:2:0:1::10/124", "outside": "fd00:2:0:9::5", "wideEntry": "fd00:2::/48",
		"innerCIDR": "fd00:2:0:1:8000::/65", "outerCIDR": "fd00:2::/63", "narrowCIDR": "fd00:2:0:5:8000::/65", "aroundNarrow": "fd00:2:0:5::/64",
		"victimCIDR": "fd00:1:0:1::/64", "victimPod": "fd00:1:0:1::7", "victimNode": "2001:db8:1::10",
		"otherCIDR": "fd00:3:0:1::/64", "otherNode": "2001:db8:3::10",
		"unrecorded": "fd00:9:0:1::/64", "tooWide": "fd00::/31", "hostBits": "fd00:2:0:1::1/64", "hostBitsAddr": "fd00:2:0:1::1", "hostBitsLen": "64",
		"loCIDR": "::1/128", "loRange": "::1/128", "lo": "::1",
		"llCIDR": "fe80::/64", "llRange": "fe80::/10", "ll": "fe80::1",
		"mcCIDR": "ff02::/64", "mcRange": "ff00::/8", "mc": "ff02::1",
		"anybody": "2001:db8:9::9",
	}},
}

// render replaces every {field} of s.
func (f addrFamily) render(s string) string {
	var pairs []string
	for k, v := range f {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// familyClaims is the rest of the mesh, in both families.
type familyClaims struct{}

func (familyClaims) PodCIDROwner(peer string, p netip.Prefix) (string, bool) {
	for _, o := range []struct{ owner, cidr string }{
		{"cluster1", "10.1.0.0/16"}, {"cluster1", "fd00:1::/48"}, {"cluster3", "10.3.0.0/16"}, {"cluster3", "fd00:3::/48"},
	} {
		if o.owner != peer && netip.MustParsePrefix(o.cidr).Overlaps(p) {
			return o.owner, true
		}
	}
	return "", false
}

func (familyClaims) NodeIPOwner(peer string, ip netip.Addr) (string, bool) {
	switch ip.String() {
	case "192.168.1.10", "2001:db8:1::10":
		return "cluster1", true
	case "192.168.3.10", "2001:db8:3::10":
		return "cluster3", true
	}
	return "", false
}

// logRecorder keeps the rejections the validator logs.
type logRecorder struct {
	mu   sync.Mutex
	seen []string // "kind: reason: detail"
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	h.seen = append(h.seen, attrs["kind"]+": "+attrs["reason"]+": "+attrs["detail"])
	h.mu.Unlock()
	return nil
}

// familyPeer is a validator of cluster2 with the family tests' trust and
// claims, and what it gave its sink and logged.
type familyPeer struct {
	*validator
	sink *recordSink
	logs *logRecorder
}

func newFamilyPeer(trusted bool) familyPeer {
	layout, _ := identity.NewLayout(255)
	logs := &logRecorder{}
	sink := newRecordSink()
	v := newValidator("cluster2", 2, layout, schema.DefaultPaths(), sink, newRejections("cluster2", slog.New(logs), nil))
	if trusted {
		v.trust = Trust{ClusterID: 2, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd00:2::/48")}}
	}
	v.claims = familyClaims{}
	return familyPeer{validator: v, sink: sink, logs: logs}
}

// node writes node name of cluster2 with the given pod CIDRs and
// addresses, each in the field of its family.
func (p familyPeer) node(t *testing.T, name string, cidrs []string, addrs ...string) {
	t.Helper()
	n := schema.Node{Name: name, Cluster: "cluster2", ClusterID: 2}
	for _, c := range cidrs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			t.Fatal(err)
		}
		// Written as the peer wrote it, host bits and all.
		cidr := &schema.CIDR{Prefix: pfx}
		switch {
		case pfx.Addr().Is4() && n.IPv4AllocCIDR == nil:
			n.IPv4AllocCIDR = cidr
		case pfx.Addr().Is4():
			n.IPv4SecondaryAllocCIDRs = append(n.IPv4SecondaryAllocCIDRs, cidr)
		case n.IPv6AllocCIDR == nil:
			n.IPv6AllocCIDR = cidr
		default:
			n.IPv6SecondaryAllocCIDRs = append(n.IPv6SecondaryAllocCIDRs, cidr)
		}
	}
	for _, a := range addrs {
		n.IPAddresses = append(n.IPAddresses, schema.NodeAddress{Type: schema.AddressInternalIP, IP: net.ParseIP(a)})
	}
	b, err := marshalNodeRaw(n)
	if err != nil {
		t.Fatal(err)
	}
	p.upsertNode(p.paths.Node("cluster2", name), b)
}

// marshalNodeRaw encodes n with its CIDRs as given (CIDR.MarshalJSON
// masks them; a hostile peer need not).
func marshalNodeRaw(n schema.Node) ([]byte, error) {
	b, err := n.Marshal()
	if err != nil {
		return nil, err
	}
	for _, c := range append(append([]*schema.CIDR{n.IPv4AllocCIDR, n.IPv6AllocCIDR}, n.IPv4SecondaryAllocCIDRs...), n.IPv6SecondaryAllocCIDRs...) {
		if c == nil || c.Prefix.Masked() == c.Prefix {
			continue
		}
		masked := `"IP":"` + c.Prefix.Masked().Addr().String() + `"`
		b = []byte(strings.Replace(string(b), masked, `"IP":"`+c.Prefix.Addr().String()+`"`, 1))
	}
	return b, nil
}

// ip writes the ip entry of addr (an address: a host entry under its
// address; a prefix: an entry under the prefix key, with a Mask).
func (p familyPeer) ip(t *testing.T, addr, host string, id uint32) {
	t.Helper()
	e := schema.IPEntry{ID: id, K8sNamespace: "default", K8sPodName: "pod"}
	var key string
	if pfx, err := netip.ParsePrefix(addr); err == nil {
		e.IP, e.Mask = net.IP(pfx.Addr().AsSlice()), net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())
		key = p.paths.IPCIDR(pfx)
	} else {
		a := netip.MustParseAddr(addr)
		e.IP, key = net.IP(a.AsSlice()), p.paths.IP(a)
	}
	if host != "" {
		e.HostIP = net.ParseIP(host)
	}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p.upsertIP(key, b)
}

// service writes the peer's default/rebel-base with the given backends.
func (p familyPeer) service(t *testing.T, backends ...string) {
	t.Helper()
	cs := schema.ClusterService{Cluster: "cluster2", Namespace: "default", Name: "rebel-base", Shared: true, ClusterID: 2,
		Frontends: map[string]schema.PortConfiguration{}, Backends: map[string]schema.PortConfiguration{}}
	for _, b := range backends {
		cs.Backends[b] = schema.PortConfiguration{"http": {Protocol: schema.ProtocolTCP, Port: 80}}
	}
	b, err := cs.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p.upsertService(p.paths.Service("cluster2", "default", "rebel-base"), b)
}

// state lists what the sink holds: "node <name>", "ip <prefix>" and
// "service <ns>/<name> <backends>", sorted.
func (p familyPeer) state() []string {
	s := p.sink
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name := range s.nodes {
		out = append(out, "node "+name)
	}
	for pfx := range s.ips {
		out = append(out, "ip "+pfx.String())
	}
	for k, cs := range s.services {
		var bes []string
		for b := range cs.Backends {
			bes = append(bes, b)
		}
		sort.Strings(bes)
		out = append(out, "service "+k+" "+strings.Join(bes, ","))
	}
	sort.Strings(out)
	return out
}

// sortedBackends sorts the backend list of a "service <ns>/<name> <a,b>"
// line, as state lists it.
func sortedBackends(line string) string {
	head, list, ok := strings.Cut(line, " default/rebel-base ")
	if !ok {
		return line
	}
	bes := strings.Split(list, ",")
	sort.Strings(bes)
	return head + " default/rebel-base " + strings.Join(bes, ",")
}

// The same cases for IPv4 and IPv6: an entry, node or backend of either
// family is accepted exactly when its counterpart of the other family is,
// and refused with the same reason and message (the addresses aside).
// Each case starts from the peer's node n1 ({n1CIDR} at {n1Addr}) and
// lists what the sink must hold after it and the one rejection logged.
func TestFamilyValidation(t *testing.T) {
	type op func(t *testing.T, p familyPeer, f addrFamily)
	node := func(name string, cidr, addr string) op {
		return func(t *testing.T, p familyPeer, f addrFamily) {
			var cidrs []string
			if cidr != "" {
				cidrs = []string{f.render(cidr)}
			}
			p.node(t, name, cidrs, f.render(addr))
		}
	}
	ip := func(addr, host string, id uint32) op {
		return func(t *testing.T, p familyPeer, f addrFamily) { p.ip(t, f.render(addr), f.render(host), id) }
	}
	service := func(backends ...string) op {
		return func(t *testing.T, p familyPeer, f addrFamily) {
			rendered := make([]string, len(backends))
			for i, b := range backends {
				rendered[i] = f.render(b)
			}
			p.service(t, rendered...)
		}
	}
	deleteNode := func(name string) op {
		return func(t *testing.T, p familyPeer, f addrFamily) { p.deleteNode(p.paths.Node("cluster2", name)) }
	}
	const n1 = "node n1"
	cases := []struct {
		name      string
		untrusted bool // no pod CIDRs recorded for the peer: only the mesh's claims apply
		ops       []op
		want      []string // the sink's state
		rejected  string   // "kind: reason: detail", "" for none
	}{
		// Accepted.
		{name: "pod on its node", ops: []op{ip("{pod}", "{n1Addr}", 131073)}, want: []string{"ip {pod}/{bits}", n1}},
		{name: "pod without host", ops: []op{ip("{pod}", "", 131073)}, want: []string{"ip {pod}/{bits}", n1}},
		{name: "host entry under its /32 or /128 key", ops: []op{ip("{pod}/{bits}", "{n1Addr}", 131073)}, want: []string{"ip {pod}/{bits}", n1}},
		{name: "prefix entry inside the node's pod CIDR", ops: []op{ip("{podPrefix}", "{n1Addr}", 131073)}, want: []string{"ip {podPrefix}", n1}},
		{name: "entry the node's pod CIDR itself", ops: []op{ip("{n1CIDR}", "", 131073)}, want: []string{"ip {n1CIDR}", n1}},
		{name: "pod held back until its node arrives", ops: []op{ip("{pod2}", "{n2Addr}", 131073), node("n2", "{n2CIDR}", "{n2Addr}")},
			want:     []string{"ip {pod2}/{bits}", n1, "node n2"},
			rejected: "ip: " + ReasonOutsideNodeCIDR + ": {pod2}/{bits} is in no pod CIDR of cluster2's nodes"},
		{name: "pods withdrawn with their node", ops: []op{ip("{pod}", "{n1Addr}", 131073), deleteNode("n1")}, want: nil},
		{name: "second node", ops: []op{node("n2", "{n2CIDR}", "{n2Addr}")}, want: []string{n1, "node n2"}},
		{name: "node without pod CIDR", ops: []op{node("n2", "", "{n2Addr}")}, want: []string{n1, "node n2"}},

		// ip entries refused.
		{name: "pod IP of the victim", ops: []op{ip("{victimPod}", "{n1Addr}", 131073)}, want: []string{n1},
			rejected: "ip: " + ReasonOutsideNodeCIDR + ": {victimPod}/{bits} is in no pod CIDR of cluster2's nodes"},
		{name: "pod IP of the victim, untrusted peer", untrusted: true, ops: []op{ip("{victimPod}", "", 131073)}, want: []string{n1},
			rejected: "ip: " + ReasonOutsideNodeCIDR + ": {victimPod}/{bits} is in no pod CIDR of cluster2's nodes"},
		{name: "recorded CIDR, no node's", ops: []op{ip("{outside}", "", 131073)}, want: []string{n1},
			rejected: "ip: " + ReasonOutsideNodeCIDR + ": {outside}/{bits} is in no pod CIDR of cluster2's nodes"},
		{name: "prefix entry wider than the node's pod CIDR", ops: []op{ip("{wideEntry}", "", 131073)}, want: []string{n1},
			rejected: "ip: " + ReasonOutsideNodeCIDR + ": {wideEntry} is in no pod CIDR of cluster2's nodes"},
		{name: "host the victim's node", ops: []op{ip("{pod}", "{victimNode}", 131073)}, want: []string{n1},
			rejected: "ip: " + ReasonBadHostIP + ": {pod}/{bits} names host {victimNode}, which is not an address of the node whose pod CIDR holds it"},
		{name: "host the peer's other node", ops: []op{node("n2", "{n2CIDR}", "{n2Addr}"), ip("{pod}", "{n2Addr}", 131073)}, want: []string{n1, "node n2"},
			rejected: "ip: " + ReasonBadHostIP + ": {pod}/{bits} names host {n2Addr}, which is not an address of the node whose pod CIDR holds it"},
		{name: "identity of the victim", ops: []op{ip("{pod}", "{n1Addr}", 65537)}, want: []string{n1},
			rejected: "ip: " + ReasonOutsideRange + ": ip {pod}/{bits} points to identity 65537, not one of cluster2's"},
		{name: "reserved identity", ops: []op{ip("{pod}", "{n1Addr}", 2)}, want: []string{n1},
			rejected: "ip: " + ReasonOutsideRange + ": ip {pod}/{bits} points to identity 2, not one of cluster2's"},
		{name: "loopback", ops: []op{ip("{lo}", "", 131073)}, want: []string{n1},
			rejected: "ip: " + ReasonOutsideNodeCIDR + ": {lo}/{bits} overlaps the special range {loRange}"},
		{name: "link-local", ops: []op{ip("{ll}", "", 131073)}, want: []string{n1},
			rejected: "ip: " + ReasonOutsideNodeCIDR + ": {ll}/{bits} overlaps the special range {llRange}"},
		{name: "multicast", ops: []op{ip("{mc}", "", 131073)}, want: []string{n1},
			rejected: "ip: " + ReasonOutsideNodeCIDR + ": {mc}/{bits} overlaps the special range {mcRange}"},
		{name: "accepted pod moved to the victim's node", ops: []op{ip("{pod}", "{n1Addr}", 131073), ip("{pod}", "{victimNode}", 131073)}, want: []string{n1},
			rejected: "ip: " + ReasonBadHostIP + ": {pod}/{bits} names host {victimNode}, which is not an address of the node whose pod CIDR holds it"},

		// Nodes refused.
		{name: "pod CIDR of the victim", ops: []op{node("evil", "{victimCIDR}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {victimCIDR} is outside the pod CIDRs [10.2.0.0/16 fd00:2::/48] that `clustermesh connect` recorded for cluster2"},
		{name: "pod CIDR of the victim, untrusted peer", untrusted: true, ops: []op{node("evil", "{victimCIDR}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {victimCIDR} overlaps the pod CIDRs of cluster cluster1"},
		{name: "pod CIDR of another peer, untrusted peer", untrusted: true, ops: []op{node("evil", "{otherCIDR}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {otherCIDR} overlaps the pod CIDRs of cluster cluster3"},
		{name: "pod CIDR outside the recorded ones", ops: []op{node("evil", "{unrecorded}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {unrecorded} is outside the pod CIDRs [10.2.0.0/16 fd00:2::/48] that `clustermesh connect` recorded for cluster2"},
		{name: "pod CIDR too wide", untrusted: true, ops: []op{node("evil", "{tooWide}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {tooWide} is wider than /{minBits}"},
		{name: "pod CIDR with host bits", ops: []op{node("evil", "{hostBits}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonMalformed + `: invalid value at etcd key "cilium/state/nodes/v1/cluster2/evil": cannot decode JSON object: invalid CIDR ...: address {hostBitsAddr} has bits set outside the /{hostBitsLen} mask`},
		{name: "pod CIDR loopback", untrusted: true, ops: []op{node("evil", "{loCIDR}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {loCIDR} overlaps the special range {loRange}"},
		{name: "pod CIDR link-local", untrusted: true, ops: []op{node("evil", "{llCIDR}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {llCIDR} overlaps the special range {llRange}"},
		{name: "pod CIDR multicast", untrusted: true, ops: []op{node("evil", "{mcCIDR}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {mcCIDR} overlaps the special range {mcRange}"},
		{name: "pod CIDR inside another node's", ops: []op{node("evil", "{innerCIDR}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {innerCIDR} overlaps {n1CIDR} of the peer's node n1"},
		{name: "pod CIDR around another node's", ops: []op{node("evil", "{outerCIDR}", "{n2Addr}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {outerCIDR} overlaps {n1CIDR} of the peer's node n1"},
		{name: "pod CIDR around a narrower node's", ops: []op{node("n3", "{narrowCIDR}", "{n2Addr}"), node("evil", "{aroundNarrow}", "{anybody}")},
			want:     []string{n1, "node n3"},
			rejected: "nodes: " + ReasonBadPodCIDR + ": node evil: pod CIDR {aroundNarrow} overlaps {narrowCIDR} of the peer's node n3"},
		{name: "address of the victim's node", ops: []op{node("evil", "{n2CIDR}", "{victimNode}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadNodeAddress + ": node evil: address {victimNode}: address {victimNode} is a node address of cluster cluster1"},
		{name: "address of another peer's node", ops: []op{node("evil", "{n2CIDR}", "{otherNode}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadNodeAddress + ": node evil: address {otherNode}: address {otherNode} is a node address of cluster cluster3"},
		{name: "address in the victim's pod CIDRs", ops: []op{node("evil", "{n2CIDR}", "{victimPod}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadNodeAddress + ": node evil: address {victimPod}: address {victimPod} is in the pod CIDRs of cluster cluster1"},
		{name: "address loopback", ops: []op{node("evil", "{n2CIDR}", "{lo}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadNodeAddress + ": node evil: address {lo}: address {lo} is in the special range {loRange}"},
		{name: "address link-local", ops: []op{node("evil", "{n2CIDR}", "{ll}")}, want: []string{n1},
			rejected: "nodes: " + ReasonBadNodeAddress + ": node evil: address {ll}: address {ll} is in the special range {llRange}"},

		// Service backends.
		{name: "backends on the peer's node", ops: []op{service("{pod}", "{n1Addr}")}, want: []string{n1, "service default/rebel-base {n1Addr},{pod}"}},
		{name: "backend the victim's pod", ops: []op{service("{pod}", "{victimPod}")}, want: []string{n1, "service default/rebel-base {pod}"},
			rejected: "services: " + ReasonBadBackend + ": 1 backends left out, first {victimPod}: in no pod CIDR and no address of cluster2's nodes"},
		{name: "backend the victim's node", ops: []op{service("{pod}", "{victimNode}")}, want: []string{n1, "service default/rebel-base {pod}"},
			rejected: "services: " + ReasonBadBackend + ": 1 backends left out, first {victimNode}: in no pod CIDR and no address of cluster2's nodes"},
		{name: "backend in no node's pod CIDR", ops: []op{service("{pod}", "{outside}")}, want: []string{n1, "service default/rebel-base {pod}"},
			rejected: "services: " + ReasonBadBackend + ": 1 backends left out, first {outside}: in no pod CIDR and no address of cluster2's nodes"},
		{name: "backend of a node arriving later", ops: []op{service("{pod2}"), node("n2", "{n2CIDR}", "{n2Addr}")},
			want:     []string{n1, "node n2", "service default/rebel-base {pod2}"},
			rejected: "services: " + ReasonBadBackend + ": 1 backends left out, first {pod2}: in no pod CIDR and no address of cluster2's nodes"},
	}
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			f := fam.f
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					p := newFamilyPeer(!c.untrusted)
					p.node(t, "n1", []string{f["n1CIDR"]}, f["n1Addr"])
					for _, o := range c.ops {
						o(t, p, f)
					}
					var want []string
					for _, w := range c.want {
						want = append(want, sortedBackends(f.render(w)))
					}
					slices.Sort(want)
					if d := cmp.Diff(want, p.state()); d != "" {
						t.Errorf("the sink holds (-want +got):\n%s", d)
					}
					p.logs.mu.Lock()
					logged := slices.Clone(p.logs.seen)
					p.logs.mu.Unlock()
					// "..." in the wanted message stands for anything.
					wantLog := f.render(c.rejected)
					head, tail, elided := strings.Cut(wantLog, "...")
					switch {
					case c.rejected == "" && len(logged) > 0:
						t.Errorf("rejected %q, want nothing rejected", logged)
					case c.rejected != "" && len(logged) != 1:
						t.Errorf("rejected %q,\nwant exactly one rejection %q", logged, wantLog)
					case c.rejected != "" && !elided && logged[0] != wantLog,
						elided && (!strings.HasPrefix(logged[0], head) || !strings.HasSuffix(logged[0], tail)):
						t.Errorf("rejected %q,\nwant %q", logged[0], wantLog)
					}
				})
			}
		})
	}
}

// A legitimate dual-stack peer: a node with a pod CIDR and an address of
// each family. Its pods of both families are accepted whatever the
// family of their host (Cilium writes a pod's status.hostIP as the host
// of each of its IPs), and its backends of both families are kept. When
// the node drops its IPv6 pod CIDR, its IPv6 pods and backends are
// withdrawn and the IPv4 ones stay; they come back with the CIDR.
func TestDualStackPeer(t *testing.T) {
	p := newFamilyPeer(true)
	dual := func() { p.node(t, "n1", []string{"10.2.1.0/24", "fd00:2:0:1::/64"}, "192.168.2.10", "2001:db8:2::10") }
	dual()
	for _, e := range []struct{ ip, host string }{
		{"10.2.1.5", "192.168.2.10"}, {"fd00:2:0:1::5", "192.168.2.10"},
		{"10.2.1.6", "2001:db8:2::10"}, {"fd00:2:0:1::6", "2001:db8:2::10"},
		{"fd00:2:0:1::7", ""},
	} {
		p.ip(t, e.ip, e.host, 131073)
	}
	p.service(t, "10.2.1.5", "fd00:2:0:1::5", "192.168.2.10", "2001:db8:2::10")
	all := []string{
		"ip 10.2.1.5/32", "ip 10.2.1.6/32", "ip fd00:2:0:1::5/128", "ip fd00:2:0:1::6/128", "ip fd00:2:0:1::7/128", "node n1",
		"service default/rebel-base 10.2.1.5,192.168.2.10,2001:db8:2::10,fd00:2:0:1::5",
	}
	check := func(step string, want []string) {
		t.Helper()
		if d := cmp.Diff(want, p.state()); d != "" {
			t.Errorf("%s: the sink holds (-want +got):\n%s", step, d)
		}
	}
	check("dual-stack", all)
	if n := len(p.logs.seen); n != 0 {
		t.Errorf("rejections of a legitimate peer: %q", p.logs.seen)
	}
	p.node(t, "n1", []string{"10.2.1.0/24"}, "192.168.2.10", "2001:db8:2::10")
	check("IPv6 pod CIDR dropped", []string{"ip 10.2.1.5/32", "ip 10.2.1.6/32", "node n1",
		"service default/rebel-base 10.2.1.5,192.168.2.10,2001:db8:2::10"})
	dual()
	check("IPv6 pod CIDR back", all)
	p.node(t, "n1", []string{"fd00:2:0:1::/64"}, "2001:db8:2::10")
	check("IPv6-only node", []string{"ip fd00:2:0:1::6/128", "ip fd00:2:0:1::7/128", "node n1",
		"service default/rebel-base 2001:db8:2::10,fd00:2:0:1::5"})
	dual()
	check("dual-stack again", all)
}

// A node change re-checks the entries of its pod CIDRs in both families:
// the buckets of the re-check index are /24s and /64s.
func TestFamilyRecheckBuckets(t *testing.T) {
	for _, fam := range families {
		f := fam.f
		t.Run(fam.name, func(t *testing.T) {
			p := newFamilyPeer(true)
			p.ip(t, f["pod2"], "", 131073)
			p.ip(t, f["outside"], "", 131073)
			if got := p.state(); len(got) != 0 {
				t.Fatalf("accepted before any node: %v", got)
			}
			// A node whose pod CIDR is wider than a bucket holds both.
			p.node(t, "n1", []string{f["wideEntry"]}, f["n1Addr"])
			want := []string{"ip " + f["outside"] + "/" + f["bits"], "ip " + f["pod2"] + "/" + f["bits"], "node n1"}
			slices.Sort(want)
			if d := cmp.Diff(want, p.state()); d != "" {
				t.Fatalf("after the wide node (-want +got):\n%s", d)
			}
			// Narrowed to one bucket: the other entry is withdrawn.
			p.node(t, "n1", []string{f["n2CIDR"]}, f["n1Addr"])
			want = []string{"ip " + f["pod2"] + "/" + f["bits"], "node n1"}
			if d := cmp.Diff(want, p.state()); d != "" {
				t.Fatalf("after narrowing (-want +got):\n%s", d)
			}
			if n := p.quarantine.len(); n != 1 {
				t.Fatalf("%d entries in quarantine, want 1", n)
			}
		})
	}
}

// Both families name the same fields, so that every case runs in both.
func TestFamilyFixtures(t *testing.T) {
	for _, fam := range families[1:] {
		if len(fam.f) != len(families[0].f) {
			t.Errorf("family %s has %d fields, %s %d", fam.name, len(fam.f), families[0].name, len(families[0].f))
		}
		for k := range families[0].f {
			if _, ok := fam.f[k]; !ok {
				t.Errorf("family %s lacks field %s", fam.name, k)
			}
		}
	}
}
