package interop

// Cilium reads us: Cilium v1.20's own code (its etcd client, cluster config
// reader, WatchStoreManager with synced canaries, watch stores with their
// key creators and validators, and the remote identity cache of its
// allocator) reads a cluster of ours, as a Cilium agent of another cluster
// of the mesh does, logged in with the users and certificates our install
// and `clustermesh connect` create. Every test runs at both identity
// layouts (max-connected-clusters 255 and 511), each in a process of its
// own (see inOwnProcess).

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/cilium/cilium/api/v1/models"
	cmtypes "github.com/cilium/cilium/pkg/clustermesh/types"
	ciliumidentity "github.com/cilium/cilium/pkg/identity"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/export"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/identity/podlabels"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
	"github.com/clustermesh/clustermesh/services"
)

const (
	// ourCluster is the cluster of ours that Cilium reads; ciliumCluster
	// the Cilium cluster reading it (its peer user is remote-cilium-west).
	ourCluster    = "cm-east"
	ciliumCluster = "cilium-west"

	heartbeatInterval = 200 * time.Millisecond
	syncTimeout       = 15 * time.Second
)

// ourPodCIDRs are the trust anchors connect records for ourCluster.
var ourPodCIDRs = []string{"10.244.0.0/16", "fd00:244::/48"}

// meshLayout is one identity layout: our cluster's ID in it, and the
// reading Cilium cluster's own.
type meshLayout struct {
	name         string
	maxConnected uint32
	clusterID    uint32
	ciliumID     uint32
}

var meshLayouts = []meshLayout{
	{name: "max255", maxConnected: 255, clusterID: 7, ciliumID: 2},
	{name: "max511", maxConnected: 511, clusterID: 300, ciliumID: 2},
}

// forEachLayout runs test once per layout, each in a process of its own.
func forEachLayout(t *testing.T, test func(*testing.T, meshLayout)) {
	for _, l := range meshLayouts {
		t.Run(l.name, func(t *testing.T) {
			if !inOwnProcess(t) {
				return
			}
			test(t, l)
		})
	}
}

// ciliumLayout configures Cilium's process-global cluster ID bound as an
// agent started with --max-connected-clusters does (restored at cleanup),
// checks that Cilium's identity layout is ours, and returns the reading
// cluster's ClusterInfo.
func ciliumLayout(t *testing.T, l meshLayout) (cmtypes.ClusterInfo, identity.Layout) {
	t.Helper()
	old := cmtypes.ClusterIDMax
	t.Cleanup(func() { cmtypes.ClusterIDMax = old })
	info := cmtypes.ClusterInfo{ID: l.ciliumID, Name: ciliumCluster, MaxConnectedClusters: l.maxConnected}
	if err := info.InitClusterIDMax(); err != nil {
		t.Fatal(err)
	}
	if err := info.ValidateStrict(); err != nil {
		t.Fatal(err)
	}
	layout, err := identity.NewLayout(l.maxConnected)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ciliumidentity.GetClusterIDShift(), uint32(layout.LocalBits()); got != want {
		t.Fatalf("Cilium's identity cluster shift is %d, our layout's local bits %d (max-connected-clusters %d)", got, want, l.maxConnected)
	}
	first, last := layout.Range(identity.ClusterID(l.clusterID))
	lo, hi := ciliumidentity.GetMinimalAllocationIdentity(l.clusterID), ciliumidentity.GetMaximumAllocationIdentity(l.clusterID)
	if uint32(lo) != uint32(first) || uint32(hi) != uint32(last) {
		t.Fatalf("cluster %d owns identities %d-%d in our layout, %d-%d in Cilium's", l.clusterID, first, last, lo, hi)
	}
	return info, layout
}

// meshBed is our cluster's etcd, set up as `clustermesh install` and
// `clustermesh connect` do, with our cluster config and heartbeat writers.
type meshBed struct {
	l      meshLayout
	local  cmtypes.ClusterInfo
	layout identity.Layout
	env    *kvtest.Env
	admin  *kvstore.Client
	paths  schema.Paths
	ours   *logCapture
	ourLog *slog.Logger
	ctx    context.Context
	wg     sync.WaitGroup
}

func newMeshBed(t *testing.T, l meshLayout) *meshBed {
	t.Helper()
	b := &meshBed{l: l}
	b.local, b.layout = ciliumLayout(t, l)
	// TLS, client-certificate authentication, and kvstore.BootstrapAuth:
	// the root and admin users and the read-only remote role and user, as
	// the clustermesh-apiserver sets them up when it starts.
	b.env = kvtest.Start(t, kvtest.Options{Cluster: ourCluster})
	b.paths = b.env.Paths
	b.admin = b.env.Connect(t, kvstore.AdminUser)
	// The per-peer user `clustermesh connect` creates for ciliumCluster.
	if err := kvstore.AddPeerUser(t.Context(), b.admin.Etcd(), ciliumCluster); err != nil {
		t.Fatal(err)
	}
	b.ours, b.ourLog = newLogCapture("our " + ourCluster)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	b.ctx = ctx
	t.Cleanup(func() {
		cancel()
		b.wg.Wait()
	})

	// The cluster config and the heartbeat, as clustermesh-apiserver's
	// server.Run writes them.
	cc := schema.ClusterConfig{ID: l.clusterID, Capabilities: schema.ClusterConfigCapabilities{
		SyncedCanaries: true, MaxConnectedClusters: l.maxConnected}}
	written := make(chan struct{}, 1)
	ccErr := make(chan error, 1)
	b.wg.Go(func() {
		ccErr <- kvstore.RunClusterConfig(ctx, b.admin, b.paths, ourCluster, cc, b.ourLog, func() {
			select {
			case written <- struct{}{}:
			default:
			}
		})
	})
	b.wg.Go(func() { _ = kvstore.RunHeartbeat(ctx, b.admin, b.paths, heartbeatInterval, nil, b.ourLog) })
	select {
	case <-written:
	case err := <-ccErr:
		t.Fatalf("our cluster config writer: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("our cluster config was not written within 10s")
	}
	return b
}

// readers starts a Cilium reader as the shared remote user and one as the
// per-peer user.
func (b *meshBed) readers(t *testing.T) []*ciliumReader {
	t.Helper()
	var rs []*ciliumReader
	for _, user := range []string{kvstore.RemoteUser, kvstore.PeerUser(ciliumCluster)} {
		r := startCiliumReader(t, b.env, user, ourCluster, b.local, b.l.clusterID, ourPodCIDRs)
		if r.config.ID != b.l.clusterID || r.config.Capabilities.MaxConnectedClusters != b.l.maxConnected {
			t.Fatalf("Cilium reads cluster config %+v, want id %d and maxConnectedClusters %d", r.config, b.l.clusterID, b.l.maxConnected)
		}
		rs = append(rs, r)
	}
	return rs
}

// finish checks what holds for every test once the state was read: our
// heartbeats reached Cilium's heartbeat watcher, and nobody warned.
func (b *meshBed) finish(t *testing.T, readers []*ciliumReader) {
	t.Helper()
	const msg = "Received update notification of heartbeat"
	deadline := time.Now().Add(5 * time.Second)
	for _, r := range readers {
		for r.logs.Count(msg) == 0 {
			if time.Now().After(deadline) {
				t.Errorf("Cilium reader %s never saw our heartbeat (%s) move: its etcd client would declare the connection dead", r.user, b.paths.Heartbeat())
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Cilium's status checker: connected, and no heartbeat or quorum error.
	for _, r := range readers {
		for {
			st := r.backend.Status()
			if st.State == models.StatusStateOk && strings.Contains(st.Msg, "has-quorum=true") {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("Cilium's etcd client as %s reports %s: %s", r.user, st.State, st.Msg)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, r := range readers {
		r.logs.RequireNoWarnings(t)
	}
	b.ours.RequireNoWarnings(t)
}

// waitStoresSynced waits until every reader's stores of kinds reported
// their initial list.
func waitStoresSynced(t *testing.T, readers []*ciliumReader, kinds ...string) {
	t.Helper()
	for _, r := range readers {
		for _, kind := range kinds {
			r.waitSynced(t, kind, syncTimeout)
		}
	}
}

// checkInitialCounts checks that when each of Cilium's stores reported its
// initial list, it held the whole initial state: the canaries are written
// only once everything under their prefix is.
func checkInitialCounts(t *testing.T, readers []*ciliumReader, s meshState) {
	t.Helper()
	want := map[string]int{"nodes": len(s.Nodes), "services": len(s.Services), "ip": len(s.IPs), "identities": len(s.Identities)}
	for _, r := range readers {
		for kind, n := range want {
			if got := r.initialCount(kind); got != n {
				t.Errorf("Cilium reader %s: the %s store synced with %d entries, the initial state has %d (canary written too early?)", r.user, kind, got, n)
			}
			if got := r.startedCount(kind); got != 1 {
				t.Errorf("Cilium reader %s: the %s store was started %d times, want once", r.user, kind, got)
			}
		}
	}
}

// TestCiliumReadsOurStores: every kind of value of our schema, written
// with our kvstore.SyncStore (one per prefix with its synced canary, as the
// export configures them), kvstore.RunClusterConfig and kvstore.RunHeartbeat,
// is read by Cilium's code with the same meaning, including what our export
// does not produce from Kubernetes today (CIDR-prefix ip entries, health
// and ingress IPs, secondary pod CIDRs, CiliumInternalIPs). The services
// canary is held back to prove Cilium's WatchStoreManager waits for it.
func TestCiliumReadsOurStores(t *testing.T) { forEachLayout(t, testCiliumReadsOurStores) }

func testCiliumReadsOurStores(t *testing.T, l meshLayout) {
	b := newMeshBed(t, l)
	readers := b.readers(t)
	st := b.startSyncStores(t)
	d := newStoresFixture(t, b)
	d.write(t, st)
	st.nodes.Synced()
	st.ips.Synced()
	st.ids.Synced()
	waitStoresSynced(t, readers, "nodes", "ip", "identities")
	for _, r := range readers {
		if n := r.startedCount("services"); n != 0 {
			t.Errorf("Cilium reader %s started its services store before our services canary %s was written",
				r.user, b.paths.Synced(ourCluster, b.paths.ServicesPrefix()))
		}
	}
	st.services.Synced()
	waitStoresSynced(t, readers, "services")
	want := d.view()
	ourView := func() (meshState, error) { return want, nil }
	// Our own decoders read back what we wrote, too.
	etcdIsWant := func(w meshState) error {
		got, err := ourEtcdState(b.ctx, b.admin, b.paths, ourCluster)
		if err != nil {
			return err
		}
		if diff := diffStates(w, got); diff != "" {
			return fmt.Errorf("etcd does not hold what we wrote yet (-wrote +etcd):\n%s", diff)
		}
		return nil
	}
	waitConverged(t, "initial state", syncTimeout, readers, ourView, etcdIsWant)
	checkInitialCounts(t, readers, want)

	// Updates after the sync.
	d.update(t)
	d.write(t, st)
	want = d.view()
	waitConverged(t, "updates", syncTimeout, readers, ourView, etcdIsWant)

	// Deletes after the sync.
	d.remove(t)
	d.write(t, st)
	want = d.view()
	waitConverged(t, "deletes", syncTimeout, readers, ourView, etcdIsWant)
	b.finish(t, readers)
}

// syncStores are our writers, one per prefix.
type syncStores struct{ nodes, services, ips, ids *kvstore.SyncStore }

// startSyncStores starts a SyncStore per prefix with the prefix and synced
// canary the export gives it (clustermesh-apiserver/export New).
func (b *meshBed) startSyncStores(t *testing.T) *syncStores {
	t.Helper()
	p := b.paths
	mk := func(prefix, synced string) *kvstore.SyncStore {
		s, err := kvstore.NewSyncStore(b.admin, kvstore.SyncStoreConfig{
			Prefix: prefix, SyncedKey: p.Synced(ourCluster, synced), Logger: b.ourLog})
		if err != nil {
			t.Fatal(err)
		}
		b.wg.Go(func() {
			if err := s.Run(b.ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("our sync store %s: %v", prefix, err)
			}
		})
		return s
	}
	return &syncStores{
		nodes:    mk(p.ClusterNodesPrefix(ourCluster), p.NodesPrefix()),
		ids:      mk(p.IdentityIDPrefix(), p.IdentitiesPrefix()),
		ips:      mk(p.IPDefaultPrefix(), p.IPPrefix()),
		services: mk(p.ClusterServicesPrefix(ourCluster), p.ServicesPrefix()),
	}
}

// storesFixture is the desired content of each prefix, by etcd key, built
// with our schema types.
type storesFixture struct {
	b                  *meshBed
	webID, dbID, cache uint32
	nodes              map[string]schema.Node
	services           map[string]schema.ClusterService
	ips                map[string]schema.IPEntry
	ids                map[string]schema.IdentityValue
	// written is what the stores were last given, to delete what is gone.
	written map[*kvstore.SyncStore]map[string]bool
}

func mustCIDR(t *testing.T, s string) *schema.CIDR {
	t.Helper()
	c, err := schema.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ipOf(s string) net.IP { return net.IP(netip.MustParseAddr(s).AsSlice()) }

func wgKey(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

func (b *meshBed) identityID(t *testing.T, local uint32) uint32 {
	t.Helper()
	id, err := b.layout.Make(identity.ClusterID(b.l.clusterID), local)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(id)
}

func newStoresFixture(t *testing.T, b *meshBed) *storesFixture {
	t.Helper()
	p, cid := b.paths, b.l.clusterID
	d := &storesFixture{b: b, nodes: map[string]schema.Node{}, services: map[string]schema.ClusterService{},
		ips: map[string]schema.IPEntry{}, ids: map[string]schema.IdentityValue{}, written: map[*kvstore.SyncStore]map[string]bool{}}
	d.webID, d.dbID, d.cache = b.identityID(t, 1), b.identityID(t, 2), b.identityID(t, b.layout.MaxLocal())
	addID := func(id uint32, ls identity.Labels) {
		d.ids[p.Identity(id)] = schema.IdentityValue{ID: id, Labels: ls.SortedKVStoreString()}
	}
	addID(d.webID, identity.PodLabels(ourCluster, "shop", "web", map[string]string{"app": "web"}, map[string]string{"team": "a"}))
	// An empty label value is written "k8s:canary=;".
	addID(d.dbID, identity.PodLabels(ourCluster, "shop", "db", map[string]string{"app": "db", "canary": ""}, nil))

	d.nodes[p.Node(ourCluster, "node-1")] = schema.Node{
		Name: "node-1", Cluster: ourCluster,
		IPAddresses: []schema.NodeAddress{
			{Type: schema.AddressInternalIP, IP: ipOf("172.18.0.11")},
			{Type: schema.AddressInternalIP, IP: ipOf("fd00:18::11")},
			{Type: schema.AddressExternalIP, IP: ipOf("198.51.100.11")},
			{Type: schema.AddressCiliumInternalIP, IP: ipOf("10.244.1.1")},
			{Type: schema.AddressCiliumInternalIP, IP: ipOf("fd00:244:1::1")},
		},
		IPv4AllocCIDR: mustCIDR(t, "10.244.1.0/24"), IPv6AllocCIDR: mustCIDR(t, "fd00:244:1::/64"),
		IPv4SecondaryAllocCIDRs: []*schema.CIDR{mustCIDR(t, "10.245.1.0/24")},
		IPv6SecondaryAllocCIDRs: []*schema.CIDR{mustCIDR(t, "fd00:245:1::/64")},
		IPv4HealthIP:            ipOf("10.244.1.2"), IPv6HealthIP: ipOf("fd00:244:1::2"),
		IPv4IngressIP: ipOf("10.244.1.3"), IPv6IngressIP: ipOf("fd00:244:1::3"),
		ClusterID: cid, Source: "custom-resource", EncryptionKey: 3,
		Labels:          map[string]string{"kubernetes.io/hostname": "node-1", "topology.kubernetes.io/zone": "zone-a"},
		Annotations:     map[string]string{"network.cilium.io/wg-pub-key": wgKey(1)},
		WireguardPubKey: wgKey(1), BootID: "0c5e0c63-3b40-4b6e-9d6f-0d4f1c2b9a11",
	}
	// IPv6 only.
	d.nodes[p.Node(ourCluster, "node-2")] = schema.Node{
		Name: "node-2", Cluster: ourCluster,
		IPAddresses:   []schema.NodeAddress{{Type: schema.AddressInternalIP, IP: ipOf("fd00:18::12")}},
		IPv6AllocCIDR: mustCIDR(t, "fd00:244:2::/64"), ClusterID: cid, Source: "custom-resource",
	}

	host := func(ip, hostIP string, id uint32, pod, sa string, ports ...schema.NamedPort) {
		a := netip.MustParseAddr(ip)
		d.ips[p.IP(a)] = schema.IPEntry{IP: ipOf(ip), HostIP: ipOf(hostIP), ID: id,
			K8sNamespace: "shop", K8sPodName: pod, K8sServiceAccount: sa, NamedPorts: ports}
	}
	prefix := func(s string, id uint32, key uint8, meta string) {
		pf := netip.MustParsePrefix(s)
		d.ips[p.IPCIDR(pf)] = schema.IPEntry{IP: net.IP(pf.Addr().AsSlice()),
			Mask: net.CIDRMask(pf.Bits(), pf.Addr().BitLen()), ID: id, Key: key, Metadata: meta}
	}
	webPorts := []schema.NamedPort{{Name: "http", Port: 8080, Protocol: "TCP"}, {Name: "dns", Port: 5353, Protocol: "UDP"}}
	host("10.244.1.10", "172.18.0.11", d.webID, "web-0", "web", webPorts...)
	host("fd00:244:1::10", "fd00:18::11", d.webID, "web-0", "web", webPorts...)
	host("fd00:244:2::20", "fd00:18::12", d.dbID, "db-0", "db",
		schema.NamedPort{Name: "pg", Port: 5432, Protocol: "TCP"}, schema.NamedPort{Name: "diameter", Port: 3868, Protocol: "SCTP"})
	prefix("10.245.1.0/24", d.webID, 1, "cidr-v4")
	prefix("fd00:245:1::/64", d.webID, 1, "cidr-v6")

	pc := func(kv ...any) schema.PortConfiguration {
		out := schema.PortConfiguration{}
		for i := 0; i < len(kv); i += 3 {
			out[kv[i].(string)] = &schema.L4Addr{Protocol: kv[i+1].(string), Port: uint16(kv[i+2].(int))}
		}
		return out
	}
	d.services[p.Service(ourCluster, "shop", "web")] = schema.ClusterService{
		Cluster: ourCluster, Namespace: "shop", Name: "web",
		Frontends: map[string]schema.PortConfiguration{
			"10.96.0.10":  pc("http", "TCP", 80, "dns", "UDP", 53),
			"fd00:96::10": pc("http", "TCP", 80, "dns", "UDP", 53),
		},
		Backends: map[string]schema.PortConfiguration{
			"10.244.1.10":    pc("http", "TCP", 8080, "dns", "UDP", 5353),
			"fd00:244:1::10": pc("http", "TCP", 8080, "dns", "UDP", 5353),
		},
		Hostnames: map[string]string{"10.244.1.10": "web-0", "fd00:244:1::10": "web-0"},
		Zones: map[string]schema.BackendZone{
			"10.244.1.10":    {Zone: "zone-a", ForZones: []schema.ForZone{{Name: "zone-a"}, {Name: "zone-b"}}},
			"fd00:244:1::10": {Zone: "zone-a", ForZones: []schema.ForZone{}},
		},
		Labels: map[string]string{"app": "web"}, Selector: map[string]string{"app": "web"},
		IncludeExternal: true, Shared: true, ClusterID: cid,
	}
	// Headless (no frontend), IPv6 only, an unnamed and an SCTP port.
	d.services[p.Service(ourCluster, "shop", "db")] = schema.ClusterService{
		Cluster: ourCluster, Namespace: "shop", Name: "db",
		Frontends: map[string]schema.PortConfiguration{},
		Backends:  map[string]schema.PortConfiguration{"fd00:244:2::20": pc("", "TCP", 5432, "diameter", "SCTP", 3868)},
		Labels:    map[string]string{}, Selector: map[string]string{"app": "db"},
		IncludeExternal: true, Shared: true, ClusterID: cid,
	}
	return d
}

// update changes one value of each kind and adds one.
func (d *storesFixture) update(t *testing.T) {
	t.Helper()
	p := d.b.paths
	n1 := d.nodes[p.Node(ourCluster, "node-1")]
	n1.Labels = map[string]string{"kubernetes.io/hostname": "node-1", "topology.kubernetes.io/zone": "zone-a", "rack": "r1"}
	n1.WireguardPubKey = wgKey(2)
	n1.BootID = "1d6f1d74-4c51-4c7f-8e70-1e502d3cab22"
	d.nodes[p.Node(ourCluster, "node-1")] = n1

	d.ids[p.Identity(d.cache)] = schema.IdentityValue{ID: d.cache,
		Labels: identity.PodLabels(ourCluster, "shop", "default", map[string]string{"app": "cache"}, nil).SortedKVStoreString()}

	web0 := d.ips[p.IP(netip.MustParseAddr("10.244.1.10"))]
	web0.NamedPorts = []schema.NamedPort{{Name: "http", Port: 8081, Protocol: "TCP"}}
	d.ips[p.IP(netip.MustParseAddr("10.244.1.10"))] = web0
	d.ips[p.IP(netip.MustParseAddr("10.244.1.11"))] = schema.IPEntry{IP: ipOf("10.244.1.11"), HostIP: ipOf("172.18.0.11"),
		ID: d.cache, K8sNamespace: "shop", K8sPodName: "cache-0", K8sServiceAccount: "default"}

	web := d.services[p.Service(ourCluster, "shop", "web")]
	web.Backends["10.244.1.11"] = schema.PortConfiguration{"http": {Protocol: "TCP", Port: 8080}, "dns": {Protocol: "UDP", Port: 5353}}
	web.Hostnames["10.244.1.11"] = "web-1"
	web.Zones["10.244.1.11"] = schema.BackendZone{Zone: "zone-b", ForZones: []schema.ForZone{{Name: "zone-b"}}}
	d.services[p.Service(ourCluster, "shop", "web")] = web
}

// remove deletes one value of each kind.
func (d *storesFixture) remove(t *testing.T) {
	t.Helper()
	p := d.b.paths
	delete(d.nodes, p.Node(ourCluster, "node-2"))
	delete(d.ids, p.Identity(d.dbID))
	delete(d.ips, p.IP(netip.MustParseAddr("fd00:244:2::20")))
	delete(d.ips, p.IPCIDR(netip.MustParsePrefix("fd00:245:1::/64")))
	delete(d.services, p.Service(ourCluster, "shop", "db"))
}

// write gives the stores the desired state: upserts everything, deletes
// what was written before and is gone.
func (d *storesFixture) write(t *testing.T, st *syncStores) {
	t.Helper()
	put := func(s *kvstore.SyncStore, kvs map[string][]byte) {
		prev := d.written[s]
		for k := range prev {
			if _, ok := kvs[k]; !ok {
				s.Delete(k)
			}
		}
		d.written[s] = map[string]bool{}
		for k, v := range kvs {
			if err := s.Upsert(k, v); err != nil {
				t.Fatalf("upsert %s: %v", k, err)
			}
			d.written[s][k] = true
		}
	}
	put(st.nodes, marshalAll(t, d.nodes))
	put(st.services, marshalAll(t, d.services))
	put(st.ips, marshalAll(t, d.ips))
	put(st.ids, marshalAll(t, d.ids))
}

func marshalAll[V interface{ Marshal() ([]byte, error) }](t *testing.T, m map[string]V) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		b, err := v.Marshal()
		if err != nil {
			t.Fatalf("encode %s: %v", k, err)
		}
		out[k] = b
	}
	return out
}

// view is the desired state in the neutral view.
func (d *storesFixture) view() meshState {
	p := d.b.paths
	s := newMeshState()
	for _, n := range d.nodes {
		s.Nodes[n.Name] = ourNodeView(n)
	}
	for _, svc := range d.services {
		s.Services[svc.Namespace+"/"+svc.Name] = ourServiceView(svc)
	}
	for k, e := range d.ips {
		s.IPs[k[len(p.IPDefaultPrefix()):]] = ourIPView(e)
	}
	for _, i := range d.ids {
		s.Identities[i.ID] = ourIdentityView(i)
	}
	return s
}

// TestCiliumReadsOurExport: the clustermesh-apiserver's export
// (clustermesh-apiserver/export, from Kubernetes objects of a fake
// clientset and Identity objects) with its cluster config and heartbeat, is
// read by Cilium's code as our own decoders read it: dual-stack nodes and
// pods, IPv6-only ones, a global dual-stack Service with backend hostnames
// and zones; Cilium's stores started before the export, so each starts on
// the export's canary and finds the whole initial export; then updates and
// deletes made in Kubernetes reach Cilium's observers.
func TestCiliumReadsOurExport(t *testing.T) { forEachLayout(t, testCiliumReadsOurExport) }

func testCiliumReadsOurExport(t *testing.T, l meshLayout) {
	b := newMeshBed(t, l)
	readers := b.readers(t) // before the export: the stores wait for its canaries
	fx := newExportFixture(t, b)
	fx.run(t)
	waitStoresSynced(t, readers, "nodes", "services", "ip", "identities")
	ours := func() (meshState, error) { return ourEtcdState(b.ctx, b.admin, b.paths, ourCluster) }
	initial := waitConverged(t, "initial export", syncTimeout, readers, ours, fx.checkInitial)
	checkInitialCounts(t, readers, initial)

	fx.update(t)
	waitConverged(t, "updates in Kubernetes", syncTimeout, readers, ours, fx.checkUpdated)
	fx.remove(t)
	waitConverged(t, "deletes in Kubernetes", syncTimeout, readers, ours, fx.checkRemoved)
	b.finish(t, readers)
}

// exportFixture is a cluster's Kubernetes objects and our export of them.
type exportFixture struct {
	b            *meshBed
	kube         *fake.Clientset
	ids          k8stesting.ObjectTracker
	webID, dbID  uint32
	webIDObj     *cmv1.Identity
	dbIDObj      *cmv1.Identity
	shop         *corev1.Namespace
	node1, node2 *corev1.Node
	web0, db0    *corev1.Pod
}

func newExportFixture(t *testing.T, b *meshBed) *exportFixture {
	t.Helper()
	fx := &exportFixture{b: b, webID: b.identityID(t, 1), dbID: b.identityID(t, 2)}
	fx.shop = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{"team": "a", "kubernetes.io/metadata.name": "shop"}}}
	kubeSystem := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}}
	fx.node1 = &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1",
			Labels:      map[string]string{"kubernetes.io/hostname": "node-1", "topology.kubernetes.io/zone": "zone-a"},
			Annotations: map[string]string{"network.cilium.io/wg-pub-key": wgKey(1)}},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24", "fd00:244:1::/64"}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "172.18.0.11"},
				{Type: corev1.NodeInternalIP, Address: "fd00:18::11"},
				{Type: corev1.NodeExternalIP, Address: "198.51.100.11"},
				{Type: corev1.NodeHostName, Address: "node-1"},
			},
			NodeInfo: corev1.NodeSystemInfo{BootID: "0c5e0c63-3b40-4b6e-9d6f-0d4f1c2b9a11"},
		},
	}
	fx.node2 = &corev1.Node{ // IPv6 only
		ObjectMeta: metav1.ObjectMeta{Name: "node-2", Labels: map[string]string{"kubernetes.io/hostname": "node-2"}},
		Spec:       corev1.NodeSpec{PodCIDR: "fd00:244:2::/64", PodCIDRs: []string{"fd00:244:2::/64"}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "fd00:18::12"}}},
	}
	pod := func(ns, name, sa, node, hostIP string, labels map[string]string, ports []corev1.ContainerPort, ips ...string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: node,
				Containers: []corev1.Container{{Name: "main", Image: "registry.example/app", Ports: ports}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, HostIP: hostIP, PodIP: ips[0]},
		}
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		return p
	}
	fx.web0 = pod("shop", "web-0", "web", "node-1", "172.18.0.11", map[string]string{"app": "web", "pod-template-hash": "5d8f"},
		[]corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP}},
		"10.244.1.10", "fd00:244:1::10")
	fx.db0 = pod("shop", "db-0", "db", "node-2", "fd00:18::12", map[string]string{"app": "db", "canary": ""},
		[]corev1.ContainerPort{{Name: "pg", ContainerPort: 5432, Protocol: corev1.ProtocolTCP}}, "fd00:244:2::20")
	hostNet := pod("kube-system", "kube-proxy-x", "kube-proxy", "node-1", "172.18.0.11", map[string]string{"k8s-app": "kube-proxy"}, nil, "172.18.0.11")
	hostNet.Spec.HostNetwork = true

	web := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{services.AnnotationGlobal: "true"}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00:96::10"},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			Selector:   map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}},
		},
	}
	internal := &corev1.Service{ // not global: not exported
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "internal"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	kube := []runtime.Object{fx.shop, kubeSystem, fx.node1, fx.node2, fx.web0, fx.db0, hostNet, web, internal,
		webSlice("web-v4", discoveryv1.AddressTypeIPv4, webEndpoint("10.244.1.10", "web-0", "zone-a")),
		webSlice("web-v6", discoveryv1.AddressTypeIPv6, webEndpoint("fd00:244:1::10", "web-0", "zone-a")),
	}
	fx.kube = fake.NewClientset(kube...)

	// Identities as our allocator creates them for the pods' label sets.
	fx.ids = k8stesting.NewObjectTracker(cmv1.Scheme, serializer.NewCodecFactory(cmv1.Scheme).UniversalDecoder())
	fx.webIDObj = fx.identity(t, fx.webID, fx.web0)
	fx.dbIDObj = fx.identity(t, fx.dbID, fx.db0)
	for _, o := range []*cmv1.Identity{fx.webIDObj, fx.dbIDObj} {
		if err := fx.ids.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

func (fx *exportFixture) identity(t *testing.T, id uint32, pod *corev1.Pod) *cmv1.Identity {
	t.Helper()
	var strs []string
	for l := range podlabels.ForPod(ourCluster, pod, fx.shop).All() {
		strs = append(strs, l.String())
	}
	return &cmv1.Identity{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprint(id), Labels: map[string]string{cmv1.ClusterLabel: ourCluster}},
		SecurityLabels: strs,
	}
}

func webEndpoint(ip, hostname, zone string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		Hostname: ptr.To(hostname), Zone: ptr.To(zone),
		Hints: &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}},
	}
}

func webSlice(name string, family discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: family,
		Endpoints:   eps,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)},
			{Name: ptr.To("dns"), Port: ptr.To[int32](5353), Protocol: ptr.To(corev1.ProtocolUDP)},
		},
	}
}

// identityInformer is cmv1.NewIdentityInformer over the tracker instead of
// a REST client, with the same byLabels index (built from the exported
// LabelsKey, as cmv1's unexported index function does).
func (fx *exportFixture) identityInformer() cache.SharedIndexInformer {
	gvr := cmv1.IdentityResource
	gvk := cmv1.SchemeGroupVersion.WithKind("Identity")
	lw := &cache.ListWatch{
		ListWithContextFunc: func(_ context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return fx.ids.List(gvr, gvk, "", o)
		},
		WatchFuncWithContext: func(_ context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return fx.ids.Watch(gvr, "", o)
		},
	}
	byLabels := func(obj any) ([]string, error) {
		in, ok := obj.(*cmv1.Identity)
		if !ok {
			return nil, nil
		}
		k, err := in.LabelsKey()
		if err != nil {
			return nil, nil //nolint:nilerr // unparseable identities are not indexed, as in cmv1
		}
		return []string{k}, nil
	}
	return cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, fx.ids), &cmv1.Identity{}, 0,
		cache.Indexers{cmv1.ByLabelsIndex: byLabels})
}

// run starts the informers and the export, as server.Run does.
func (fx *exportFixture) run(t *testing.T) {
	t.Helper()
	b := fx.b
	factory := informers.NewSharedInformerFactory(fx.kube, 0)
	ids := fx.identityInformer()
	exp, err := export.New(export.Config{
		Cluster: ourCluster, ClusterID: identity.ClusterID(b.l.clusterID), Layout: b.layout, Paths: b.paths,
		DefaultGlobalNamespace: true, Log: b.ourLog,
	}, b.admin, export.Sources{Factory: factory, Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		factory.Shutdown()
	})
	factory.Start(ctx.Done())
	wg.Go(func() { ids.Run(ctx.Done()) })
	sctx, scancel := context.WithTimeout(ctx, syncTimeout)
	defer scancel()
	for typ, ok := range factory.WaitForCacheSync(sctx.Done()) {
		if !ok {
			t.Fatalf("informer of %v did not sync", typ)
		}
	}
	if !cache.WaitForCacheSync(sctx.Done(), ids.HasSynced) {
		t.Fatal("identity informer did not sync")
	}
	wg.Go(func() {
		if err := exp.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("export: %v", err)
		}
	})
}

func hasAll[V any](m map[string]V, keys ...string) error {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return fmt.Errorf("%q is missing from %v", k, keysOf(m))
		}
	}
	return nil
}

func sameKeys[K interface{ ~string | ~uint32 }, V any](what string, m map[K]V, want ...K) error {
	slices.Sort(want)
	if got := keysOf(m); !slices.Equal(got, want) {
		return fmt.Errorf("%s: have %v, want %v", what, got, want)
	}
	return nil
}

// checkInitial checks that our export holds what the fixture means (so
// that the comparison with Cilium's view is about the right values).
func (fx *exportFixture) checkInitial(s meshState) error {
	cid := fx.b.l.clusterID
	errs := []error{
		sameKeys("nodes", s.Nodes, "node-1", "node-2"),
		sameKeys("ip entries", s.IPs, "10.244.1.10", "fd00:244:1::10", "fd00:244:2::20"),
		sameKeys("identities", s.Identities, fx.webID, fx.dbID),
		sameKeys("services", s.Services, "shop/web"),
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	n1, n2 := s.Nodes["node-1"], s.Nodes["node-2"]
	if !slices.Contains(n1.Addresses, "InternalIP fd00:18::11") || !slices.Contains(n1.Addresses, "InternalIP 172.18.0.11") ||
		n1.IPv4AllocCIDR != "10.244.1.0/24" || n1.IPv6AllocCIDR != "fd00:244:1::/64" || n1.ClusterID != cid ||
		n1.WireguardPubKey != wgKey(1) {
		return fmt.Errorf("node-1 is exported as %+v", n1)
	}
	if n2.IPv6AllocCIDR != "fd00:244:2::/64" || !slices.Contains(n2.Addresses, "InternalIP fd00:18::12") {
		return fmt.Errorf("node-2 is exported as %+v", n2)
	}
	if e := s.IPs["fd00:244:1::10"]; e.ID != fx.webID || e.K8sPodName != "web-0" || e.HostIP != "172.18.0.11" ||
		!slices.Contains(e.NamedPorts, "http TCP:8080") {
		return fmt.Errorf("ip entry fd00:244:1::10 is exported as %+v", e)
	}
	if e := s.IPs["fd00:244:2::20"]; e.ID != fx.dbID || e.HostIP != "fd00:18::12" {
		return fmt.Errorf("ip entry fd00:244:2::20 is exported as %+v", e)
	}
	if !slices.Contains(s.Identities[fx.dbID].Labels, "k8s:canary=") {
		return fmt.Errorf("identity %d is exported as %+v", fx.dbID, s.Identities[fx.dbID])
	}
	web := s.Services["shop/web"]
	if err := errors.Join(hasAll(web.Frontends, "10.96.0.10", "fd00:96::10"), hasAll(web.Backends, "10.244.1.10", "fd00:244:1::10"),
		hasAll(web.Hostnames, "10.244.1.10", "fd00:244:1::10"), hasAll(web.Zones, "10.244.1.10", "fd00:244:1::10")); err != nil {
		return fmt.Errorf("service shop/web: %w", err)
	}
	if web.Frontends["fd00:96::10"]["dns"] != "UDP:53" || web.Hostnames["fd00:244:1::10"] != "web-0" ||
		web.Zones["10.244.1.10"] != "zone-a for [zone-a]" || web.ClusterID != cid {
		return fmt.Errorf("service shop/web is exported as %+v", web)
	}
	return nil
}

// update changes a node, adds a pod (a new ip entry of an existing
// identity) and a backend with its hostname and zone.
func (fx *exportFixture) update(t *testing.T) {
	t.Helper()
	ctx := fx.b.ctx
	core := fx.kube.CoreV1()
	n1 := fx.node1.DeepCopy()
	n1.Labels["rack"] = "r1"
	if _, err := core.Nodes().Update(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	web1 := fx.web0.DeepCopy()
	web1.Name = "web-1"
	web1.Status.PodIP = "10.244.1.11"
	web1.Status.PodIPs = []corev1.PodIP{{IP: "10.244.1.11"}}
	if _, err := core.Pods("shop").Create(ctx, web1, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := webSlice("web-v4", discoveryv1.AddressTypeIPv4,
		webEndpoint("10.244.1.10", "web-0", "zone-a"), webEndpoint("10.244.1.11", "web-1", "zone-b"))
	if _, err := fx.kube.DiscoveryV1().EndpointSlices("shop").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (fx *exportFixture) checkUpdated(s meshState) error {
	if s.Nodes["node-1"].Labels["rack"] != "r1" {
		return fmt.Errorf("node-1 labels %v lack rack=r1", s.Nodes["node-1"].Labels)
	}
	if e, ok := s.IPs["10.244.1.11"]; !ok || e.ID != fx.webID || e.K8sPodName != "web-1" {
		return fmt.Errorf("ip entry 10.244.1.11 is %+v (present %v)", e, ok)
	}
	web := s.Services["shop/web"]
	if web.Backends["10.244.1.11"]["http"] != "TCP:8080" || web.Hostnames["10.244.1.11"] != "web-1" ||
		web.Zones["10.244.1.11"] != "zone-b for [zone-b]" {
		return fmt.Errorf("service shop/web lacks backend 10.244.1.11: %+v", web)
	}
	return nil
}

// remove deletes a pod, a node, an identity and the global Service.
func (fx *exportFixture) remove(t *testing.T) {
	t.Helper()
	ctx := fx.b.ctx
	core := fx.kube.CoreV1()
	if err := core.Pods("shop").Delete(ctx, "db-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := core.Nodes().Delete(ctx, "node-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := fx.ids.Delete(cmv1.IdentityResource, "", fx.dbIDObj.Name); err != nil {
		t.Fatal(err)
	}
	if err := core.Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (fx *exportFixture) checkRemoved(s meshState) error {
	return errors.Join(
		sameKeys("nodes", s.Nodes, "node-1"),
		sameKeys("ip entries", s.IPs, "10.244.1.10", "10.244.1.11", "fd00:244:1::10"),
		sameKeys("identities", s.Identities, fx.webID),
		sameKeys("services", s.Services),
	)
}
