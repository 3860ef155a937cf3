package interop

// "We read Cilium": a cluster written by Cilium v1.20's own code (its etcd
// users and roles, its SyncStores, its cluster config enforcer, its etcd
// client, its identity allocator backend) is read by our agent's remote
// cluster code, logged in with the "remote" user Cilium's etcdinit
// created, at both cluster-ID layouts.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go4.org/netipx"

	"github.com/cilium/cilium/pkg/cidr"
	"github.com/cilium/cilium/pkg/clustermesh/clustercfg"
	cmstore "github.com/cilium/cilium/pkg/clustermesh/store"
	cmtypes "github.com/cilium/cilium/pkg/clustermesh/types"
	ciliumid "github.com/cilium/cilium/pkg/identity"
	idkey "github.com/cilium/cilium/pkg/identity/key"
	"github.com/cilium/cilium/pkg/idpool"
	ciliumkv "github.com/cilium/cilium/pkg/kvstore"
	kvallocator "github.com/cilium/cilium/pkg/kvstore/allocator"
	etcdinit "github.com/cilium/cilium/pkg/kvstore/etcdinit"
	ciliumstore "github.com/cilium/cilium/pkg/kvstore/store"
	"github.com/cilium/cilium/pkg/labels"
	"github.com/cilium/cilium/pkg/loadbalancer"
	"github.com/cilium/cilium/pkg/node/addressing"
	nodestore "github.com/cilium/cilium/pkg/node/store"
	nodetypes "github.com/cilium/cilium/pkg/node/types"
	"github.com/cilium/cilium/pkg/source"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Prefixes Cilium writes that live in packages that do not build against
// our Kubernetes versions (pkg/identity/cache, pkg/ipcache import
// pkg/k8s/client): the same values, spelled out.
const (
	// pkg/identity/cache.IdentitiesPath
	writerIdentitiesPath = "cilium/state/identities/v1"
	// pkg/ipcache.IPIdentitiesPath and DefaultAddressSpace
	writerIPPath       = "cilium/state/ip/v1"
	writerAddressSpace = "default"
)

// writesLayout is one cluster-ID layout: the peer's cluster ID, its name,
// and the addresses its nodes and pods use.
type writesLayout struct {
	max       uint32
	clusterID uint32
	name      string
	// net4 is the second octet of the peer's IPv4 pod and node networks;
	// net6 the second group of its IPv6 ones.
	net4, net6 int
}

var writesLayouts = []writesLayout{
	{max: 255, clusterID: 7, name: "cilium-seven", net4: 7, net6: 7},
	{max: 511, clusterID: 300, name: "cilium-three-hundred", net4: 44, net6: 0x300},
}

// layoutEnv names the layout a child process runs (see
// TestCiliumWritesWeRead).
const layoutEnv = "INTEROP_CILIUM_WRITES_MAX_CONNECTED_CLUSTERS"

// TestCiliumWritesWeRead runs TestCiliumWritesWeReadLayout once per
// cluster-ID layout, each in a process of its own: Cilium computes its
// identity layout once per process (pkg/identity.GetClusterIDShift is
// behind a sync.Once) from the global types.ClusterIDMax, so the 255 and
// the 511 layouts cannot both be exercised in one process.
func TestCiliumWritesWeRead(t *testing.T) {
	if os.Getenv(layoutEnv) != "" {
		t.Skip("the child process runs TestCiliumWritesWeReadLayout only")
	}
	for _, l := range writesLayouts {
		t.Run(fmt.Sprintf("maxConnectedClusters=%d", l.max), func(t *testing.T) {
			args := []string{"-test.run=^TestCiliumWritesWeReadLayout$", "-test.count=1"}
			if testing.Verbose() {
				args = append(args, "-test.v=true")
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], args...)
			cmd.Env = append(os.Environ(), layoutEnv+"="+strconv.FormatUint(uint64(l.max), 10))
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("layout %d (cluster %s, ID %d) failed (%v):\n%s", l.max, l.name, l.clusterID, err, out)
			}
			if !bytes.Contains(out, []byte("PASS")) || bytes.Contains(out, []byte("no tests to run")) {
				t.Fatalf("layout %d: the child process did not run the test:\n%s", l.max, out)
			}
			t.Logf("layout %d passed in %v", l.max, time.Since(start).Round(time.Millisecond))
			if testing.Verbose() {
				t.Logf("child output:\n%s", out)
			}
		})
	}
}

// TestCiliumWritesWeReadLayout is one layout of TestCiliumWritesWeRead; it
// runs only in the child process that test starts.
func TestCiliumWritesWeReadLayout(t *testing.T) {
	want := os.Getenv(layoutEnv)
	if want == "" {
		t.Skip("run by TestCiliumWritesWeRead, in a process of its own per layout")
	}
	for _, l := range writesLayouts {
		if strconv.FormatUint(uint64(l.max), 10) == want {
			runCiliumWrites(t, l)
			return
		}
	}
	t.Fatalf("%s=%s: no such layout", layoutEnv, want)
}

func runCiliumWrites(t *testing.T, l writesLayout) {
	ctx := t.Context()
	log := ciliumLogger(t)

	// Cilium's global cluster-ID layout, as its ClusterInfo cell sets it.
	cinfo := cmtypes.ClusterInfo{ID: l.clusterID, Name: l.name, MaxConnectedClusters: l.max}
	oldMax := cmtypes.ClusterIDMax
	if err := cinfo.InitClusterIDMax(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmtypes.ClusterIDMax = oldMax })
	if err := cinfo.ValidateStrict(); err != nil {
		t.Fatalf("Cilium refuses the cluster info: %v", err)
	}
	ourLayout, err := identity.NewLayout(l.max)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ciliumid.GetClusterIDShift(), uint32(ourLayout.LocalBits()); got != want {
		t.Fatalf("Cilium's identity cluster shift is %d with maxConnectedClusters %d, ours %d", got, l.max, want)
	}
	// Identities as Cilium allocates them in the cluster's range, checked
	// against the layout the brief fixes (clusterID<<shift | local).
	minID := ciliumid.GetMinimalAllocationIdentity(l.clusterID)
	ciliumIdentity := func(local uint32) ciliumid.NumericIdentity {
		id := minID + ciliumid.NumericIdentity(local)
		if want := l.clusterID<<ourLayout.LocalBits() | local; uint32(id) != want {
			t.Fatalf("Cilium's identity %d for cluster %d local %d, want %d", id, l.clusterID, local, want)
		}
		ours, err := ourLayout.Make(identity.ClusterID(l.clusterID), local)
		if err != nil || uint32(ours) != uint32(id) {
			t.Fatalf("our identity for cluster %d local %d is %d (%v), Cilium's %d", l.clusterID, local, ours, err, id)
		}
		if got := id.ClusterID(); got != l.clusterID {
			t.Fatalf("Cilium says identity %d is of cluster %d, want %d", id, got, l.clusterID)
		}
		return id
	}

	// 1. A fresh etcd whose users and roles Cilium's etcdinit creates.
	e := startTLSEtcd(t)
	{
		boot := e.Etcd(t, "root") // authentication is still off
		if err := etcdinit.ClusterMeshEtcdInit(ctx, log, boot, l.name); err != nil {
			t.Fatalf("Cilium's ClusterMeshEtcdInit: %v", err)
		}
	}

	// 2. The clustermesh-apiserver's writers: Cilium's etcd client logged in
	// as the admin user etcdinit made, its cluster config enforcer, its
	// heartbeat, its SyncStores.
	cli := connectCilium(t, e.CiliumConfigFile(t, "admin-"+l.name), ciliumkv.ExtraOptions{})
	exportsMCS := false                  // the MCS-API is off by default
	ccfg := cmtypes.CiliumClusterConfig{ // as clustercfgcell.Cell builds it by default
		ID: l.clusterID,
		Capabilities: cmtypes.CiliumClusterConfigCapabilities{
			SyncedCanaries:           true,
			MaxConnectedClusters:     l.max,
			ServiceExportsEnabled:    &exportsMCS,
			EndpointSlicesExportMode: cmtypes.EndpointSlicesExportModeServicesAndEndpointSlices,
		},
	}
	stopEnforcer, err := clustercfg.Enforce(ctx, l.name, ccfg, cli, log)
	if err != nil {
		t.Fatalf("Cilium's clustercfg.Enforce: %v", err)
	}
	t.Cleanup(stopEnforcer)
	// pkg/kvstore/heartbeat's cell writes exactly this, but only after its
	// first one-minute tick (a hive job.Timer does not fire at start).
	heartbeat := time.Now().Format(time.RFC3339)
	if err := cli.Update(ctx, ciliumkv.HeartbeatPath, []byte(heartbeat), true); err != nil {
		t.Fatal(err)
	}

	factory := ciliumstore.NewFactory(log, ciliumstore.MetricsProvider())
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	newStore := func(prefix string, opts ...ciliumstore.WSSOpt) ciliumstore.SyncStore {
		s := factory.NewSyncStore(l.name, cli, prefix, opts...)
		wg.Go(func() { s.Run(sctx) })
		return s
	}
	// The clustermesh-apiserver's stores (clustermesh-apiserver/clustermesh:
	// CiliumNodes, CiliumIdentities, CiliumEndpoints) and the operator's
	// service store (operator/watchers/service_sync.go).
	nodes := newStore(nodestore.NodeStorePrefix)
	identities := newStore(ciliumkv.JoinKey(writerIdentitiesPath, "id"), ciliumstore.WSSWithSyncedKeyOverride(writerIdentitiesPath))
	ips := newStore(ciliumkv.JoinKey(writerIPPath, writerAddressSpace), ciliumstore.WSSWithSyncedKeyOverride(writerIPPath))
	services := newStore(cmstore.ServiceStorePrefix)
	// An agent in kvstore identity mode allocates through this backend.
	allocator, err := kvallocator.NewKVStoreBackend(log, kvallocator.KVStoreBackendConfiguration{
		BasePath: writerIdentitiesPath, Suffix: nodeA, Typ: &idkey.GlobalIdentity{}, Backend: cli,
	})
	if err != nil {
		t.Fatal(err)
	}

	want := newWantState()
	d := newPeerData(l)
	upsertNode := func(n nodetypes.Node) {
		t.Helper()
		if err := nodes.UpsertKey(ctx, &n); err != nil {
			t.Fatal(err)
		}
		want.nodes[n.Name] = ourNode(n)
	}
	upsertIdentity := func(id ciliumid.NumericIdentity, securityLabels map[string]string) {
		t.Helper()
		// clustermesh-apiserver's CiliumIdentityConverter.
		lbls := labels.Map2Labels(securityLabels, "")
		if err := identities.UpsertKey(ctx, ciliumstore.NewKVPair(id.String(), string(lbls.SortedList()))); err != nil {
			t.Fatal(err)
		}
		want.identities[identity.NumericIdentity(id)] = ourLabels(t, lbls)
		want.identityValues[identity.NumericIdentity(id)] = string(lbls.SortedList())
	}
	allocateIdentity := func(id ciliumid.NumericIdentity, securityLabels map[string]string) {
		t.Helper()
		lbls := labels.Map2Labels(securityLabels, "")
		if _, err := allocator.AllocateID(ctx, idpool.ID(id), &idkey.GlobalIdentity{LabelArray: lbls.LabelArray()}); err != nil {
			t.Fatalf("Cilium's kvstore allocator: %v", err)
		}
		want.identities[identity.NumericIdentity(id)] = ourLabels(t, lbls)
		want.identityValues[identity.NumericIdentity(id)] = (&idkey.GlobalIdentity{LabelArray: lbls.LabelArray()}).GetKey()
	}
	upsertIP := func(p ciliumid.IPIdentityPair) {
		t.Helper()
		if err := ips.UpsertKey(ctx, &p); err != nil {
			t.Fatal(err)
		}
		prefix, entry := ourIPEntry(t, p)
		want.ips[prefix] = entry
	}
	upsertService := func(s cmstore.ClusterService) {
		t.Helper()
		if err := services.UpsertKey(ctx, &s); err != nil {
			t.Fatal(err)
		}
		want.services[s.Namespace+"/"+s.Name] = ourService(s)
	}

	// 3. The whole cluster.
	for _, n := range []nodetypes.Node{d.nodeA(), d.nodeB(), d.nodeC()} {
		upsertNode(n)
	}
	xwing := ciliumIdentity(1)
	rebel := ciliumIdentity(2)
	tie := ciliumIdentity(3)
	probe := ciliumIdentity(100)
	probeGone := ciliumIdentity(101)
	upsertIdentity(xwing, d.podLabels("default", "x-wing", map[string]string{"app": "x-wing", "class": "fighter", "app.kubernetes.io/part-of": "rebellion", "canary": ""}))
	upsertIdentity(rebel, d.podLabels("default", "rebel-base", map[string]string{"app": "rebel-base"}))
	upsertIdentity(tie, d.podLabels("empire", "default", map[string]string{"app": "tie"}))
	allocateIdentity(probe, d.podLabels("kube-system", "probe", map[string]string{"app": "probe"}))
	allocateIdentity(probeGone, d.podLabels("kube-system", "probe", map[string]string{"app": "probe-old"}))
	for _, p := range d.endpoint("default", "x-wing-1", "x-wing", xwing, d.nodeIP4(nodeA), d.pod4(1, 5), d.pod6(1, 5)) {
		upsertIP(p)
	}
	for _, p := range d.endpoint("default", "x-wing-2", "x-wing", xwing, d.nodeIP4(nodeA), d.pod4(1, 6)) {
		upsertIP(p)
	}
	for _, p := range d.endpoint("default", "rebel-base-0", "rebel-base", rebel, d.nodeIP6(nodeB), d.pod6(2, 7)) {
		upsertIP(p)
	}
	for _, p := range d.endpoint("empire", "tie-1", "default", tie, d.nodeIP4(nodeA), d.pod4(101, 9)) {
		upsertIP(p)
	}
	// An agent in kvstore mode writes its endpoints itself, with Metadata.
	agentWrite := func(p ciliumid.IPIdentityPair) {
		t.Helper()
		b, err := json.Marshal(p) // IPIdentitySynchronizer.Upsert
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.UpdateIfDifferent(ctx, ciliumkv.JoinKey(writerIPPath, writerAddressSpace, p.IP.String()), b, true); err != nil {
			t.Fatal(err)
		}
		prefix, entry := ourIPEntry(t, p)
		want.ips[prefix] = entry
	}
	agentWrite(d.agentEndpoint("kube-system", "probe-1", nodeA, 4711, probe, d.nodeIP4(nodeA), d.pod4(1, 20)))
	upsertService(d.rebelBase())
	upsertService(d.headless())
	for _, s := range []ciliumstore.SyncStore{nodes, identities, ips, services} {
		if err := s.Synced(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// 4. Our agent, logged in as Cilium's remote user.
	sink := newRecordingSink()
	trust := remote.Trust{ClusterID: identity.ClusterID(l.clusterID), PodCIDRs: d.recordedPodCIDRs()}
	c, err := remote.New(remote.Config{
		Name: l.name, Client: e.ClientConfig(t, "remote"), Paths: schema.DefaultPaths(),
		LocalName: "local", LocalID: 1, MaxConnectedClusters: l.max,
		Registry: remote.NewRegistry("local", 1), Sink: sink,
		Backoff:  backoff.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		CacheTTL: 10 * time.Minute, Trust: trust,
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.WithoutCancel(ctx))
	var awg sync.WaitGroup
	awg.Go(func() { _ = c.Run(actx) })
	t.Cleanup(func() { acancel(); awg.Wait() })

	waitPeer(t, c, "our agent ready on Cilium's cluster", func() bool { return c.Status().Ready })
	// Ready means every prefix's synced canary was seen after its list:
	// everything Cilium wrote before Synced is in the sink now.
	st := c.Status()
	if !st.Connected || st.ClusterID != l.clusterID {
		t.Fatalf("status %+v: want connected with cluster ID %d", st, l.clusterID)
	}
	if len(st.Rejected) != 0 {
		t.Fatalf("our agent rejected part of what Cilium wrote: %v", st.Rejected)
	}
	if diff := want.diff(sink); diff != "" {
		t.Fatalf("what our agent received once ready differs from what Cilium wrote (-Cilium +ours):\n%s", diff)
	}
	if sink.drainCount() != 0 {
		t.Fatalf("%d drains", sink.drainCount())
	}
	// Our canonical form of each label set is the value Cilium stored.
	for id, value := range want.identityValues {
		sink.mu.Lock()
		got := sink.identities[id].SortedKVStoreString()
		sink.mu.Unlock()
		if got != value {
			t.Errorf("identity %d: Cilium wrote %q, our labels say %q", id, value, got)
		}
	}

	t.Run("cluster config", func(t *testing.T) {
		ours := e.Connect(t, "remote")
		got, err := kvstore.GetClusterConfig(ctx, ours, schema.DefaultPaths(), l.name)
		if err != nil {
			t.Fatalf("our reader refuses Cilium's cluster config: %v", err)
		}
		if got.ID != l.clusterID || got.EffectiveMaxConnectedClusters() != l.max || !got.Capabilities.SyncedCanaries ||
			got.Capabilities.Cached || got.Capabilities.ServiceExportsEnabled == nil || *got.Capabilities.ServiceExportsEnabled {
			t.Fatalf("our reading of Cilium's cluster config: %+v", got)
		}
		// Nothing Cilium says is lost: our config, written back, says the
		// same as Cilium's (endpointSlicesExportMode included).
		raw, err := ours.Etcd().Get(ctx, ciliumkv.JoinKey(ciliumkv.ClusterConfigPrefix, l.name))
		if err != nil || len(raw.Kvs) != 1 {
			t.Fatalf("read Cilium's cluster config: %v", err)
		}
		back, err := got.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var ciliums, oursBack map[string]any
		if err := json.Unmarshal(raw.Kvs[0].Value, &ciliums); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(back, &oursBack); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ciliums, oursBack); diff != "" {
			t.Errorf("our ClusterConfig does not carry all of Cilium's %s (-Cilium +ours written back):\n%s", raw.Kvs[0].Value, diff)
		}
	})

	t.Run("heartbeat", func(t *testing.T) {
		ours := e.Connect(t, "remote")
		mon := kvstore.NewHeartbeatMonitor(ours, schema.DefaultPaths(), time.Minute, nil)
		mctx, mcancel := context.WithCancel(ctx)
		var mwg sync.WaitGroup
		mwg.Go(func() { _ = mon.Run(mctx) })
		defer func() { mcancel(); mwg.Wait() }()
		written, _ := time.Parse(time.RFC3339, heartbeat)
		testutil.Eventually(t, 10*time.Second, "Cilium's heartbeat read", func() bool { return !mon.Status().Last.IsZero() })
		if hs := mon.Status(); !hs.Last.Equal(written) || hs.Err != "" || hs.Stale {
			t.Fatalf("our reading of Cilium's heartbeat %q: %+v", heartbeat, hs)
		}
	})

	// 5. Cilium deletes and updates after the sync.
	del := func(s ciliumstore.SyncStore, k ciliumstore.NamedKey) {
		t.Helper()
		if err := s.DeleteKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// A node leaves with nothing on it.
	del(nodes, &nodetypes.Node{Cluster: l.name, Name: nodeC})
	delete(want.nodes, nodeC)
	// A pod goes.
	gone := ciliumid.IPIdentityPair{IP: net.ParseIP(d.pod4(1, 6))}
	del(ips, &gone)
	delete(want.ips, netip.MustParsePrefix(d.pod4(1, 6)+"/32"))
	// The last pod of an identity goes, and the identity with it (CRD mode),
	// and an identity of the kvstore allocator is released.
	del(ips, &ciliumid.IPIdentityPair{IP: net.ParseIP(d.pod4(101, 9))})
	delete(want.ips, netip.MustParsePrefix(d.pod4(101, 9)+"/32"))
	del(identities, ciliumstore.NewKVPair(tie.String(), ""))
	delete(want.identities, identity.NumericIdentity(tie))
	if err := allocator.DeleteID(ctx, idpool.ID(probeGone)); err != nil {
		t.Fatal(err)
	}
	delete(want.identities, identity.NumericIdentity(probeGone))
	// A service stops being global.
	hl := d.headless()
	del(services, &hl)
	delete(want.services, hl.Namespace+"/"+hl.Name)
	// A node reboots, gets a label; a pod is relabelled; a new identity; a
	// service's backends move.
	a := d.nodeA()
	a.BootID = "0d7d2a8e-reboot"
	a.Labels["node-role.kubernetes.io/worker"] = ""
	upsertNode(a)
	upsertIdentity(ciliumIdentity(4), d.podLabels("default", "x-wing", map[string]string{"app": "x-wing", "class": "bomber"}))
	for _, p := range d.endpoint("default", "x-wing-1", "x-wing", ciliumIdentity(4), d.nodeIP4(nodeA), d.pod4(1, 5), d.pod6(1, 5)) {
		upsertIP(p)
	}
	svc := d.rebelBase()
	delete(svc.Backends, d.pod6(2, 7))
	delete(svc.Zones, d.pod6(2, 7))
	p8080 := loadbalancer.NewL4Addr(loadbalancer.TCP, 8080)
	svc.Backends[d.pod4(1, 8)] = cmstore.PortConfiguration{"http": &p8080}
	svc.Hostnames[d.pod4(1, 8)] = "rebel-base-1"
	upsertService(svc)
	waitForState(t, c, "Cilium's deletes and updates", want, sink)

	// 6. A kvstore-mode agent's endpoint that arrives before its node: held
	// back, then accepted whole once Cilium writes the node.
	agentWrite(d.agentEndpoint("default", "late-1", nodeD, 99, rebel, d.nodeIP4(nodeD), d.pod4(4, 5)))
	quarantined := "ip: " + remote.ReasonOutsideNodeCIDR
	waitPeer(t, c, "the endpoint before its node held back", func() bool { return c.Status().Rejected[quarantined] == 1 })
	upsertNode(d.nodeD())
	late := netip.MustParsePrefix(d.pod4(4, 5) + "/32")
	waitPeer(t, c, "the endpoint accepted with its node", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		_, ok := sink.ips[late]
		return ok
	})
	if diff := want.diff(sink); diff != "" {
		t.Errorf("the endpoint accepted once its node arrived is not the one Cilium wrote (-Cilium +ours):\n%s", diff)
	}

	st = c.Status()
	if diff := cmp.Diff(map[string]uint64{quarantined: 1}, st.Rejected); diff != "" {
		t.Errorf("rejections (-want +got):\n%s", diff)
	}
	for kind, n := range map[remote.Kind]int{remote.KindNodes: len(want.nodes), remote.KindIdentities: len(want.identities),
		remote.KindIPs: len(want.ips), remote.KindServices: len(want.services)} {
		if st.Entries[kind] != n {
			t.Errorf("status entries of %s: %d, Cilium wrote %d", kind, st.Entries[kind], n)
		}
	}
	if !st.Ready || !st.Connected || st.Failures != 0 || sink.drainCount() != 0 {
		t.Errorf("status after the changes: %+v, %d drains", st, sink.drainCount())
	}
	if got := sink.clusterNames(); !slices.Equal(got, []string{l.name}) {
		t.Errorf("the sink was told of clusters %v, want only %s", got, l.name)
	}
}

// waitPeer waits for cond, failing with the peer's status.
func waitPeer(t *testing.T, c *remote.Cluster, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 20s waiting for %s; status %+v", what, c.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitForState waits until the sink holds what Cilium wrote, failing with
// the difference.
func waitForState(t *testing.T, c *remote.Cluster, what string, want *wantState, sink *recordingSink) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		diff := want.diff(sink)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 20s waiting for %s; status %+v; what our agent received differs from what Cilium wrote (-Cilium +ours):\n%s",
				what, c.Status(), diff)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// peerData builds what a Cilium cluster of the layout holds.
type peerData struct{ l writesLayout }

func newPeerData(l writesLayout) peerData { return peerData{l: l} }

// pod4 is an IPv4 pod address in the node subnet n; pod6 an IPv6 one.
func (d peerData) pod4(n, host int) string { return fmt.Sprintf("10.%d.%d.%d", d.l.net4, n, host) }
func (d peerData) pod6(n, host int) string { return fmt.Sprintf("fd00:%x:%x::%x", d.l.net6, n, host) }

// Node names: node B's is a cloud provider's FQDN.
const (
	nodeA = "node-a"
	nodeB = "ip-10-0-3-17.eu-west-1.compute.internal"
	nodeC = "node-c"
	nodeD = "node-d"
)

var nodeIndex = map[string]int{nodeA: 0, nodeB: 1, nodeC: 2, nodeD: 3}

func (d peerData) nodeIP4(name string) string {
	return fmt.Sprintf("192.168.%d.%d", d.l.net4, 10+nodeIndex[name])
}

func (d peerData) nodeIP6(name string) string {
	return fmt.Sprintf("fc00:%x::%x", d.l.net6, 0x10+nodeIndex[name])
}

// recordedPodCIDRs are the pod CIDRs `clustermesh connect` records for the
// peer (its ConfigMap's cluster pool).
func (d peerData) recordedPodCIDRs() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", d.l.net4)),
		netip.MustParsePrefix(fmt.Sprintf("fd00:%x::/32", d.l.net6)),
	}
}

func ciliumCIDR(s string) *cidr.CIDR {
	return cidr.NewCIDR(netipx.PrefixIPNet(netip.MustParsePrefix(s).Masked()))
}

// The nodes, as clustermesh-apiserver's CiliumNodeConverter makes them
// (k8s.ParseCiliumNode, then Cluster and ClusterID).
func (d peerData) node(name string) nodetypes.Node {
	return nodetypes.Node{
		Name: name, Cluster: d.l.name, ClusterID: d.l.clusterID, Source: source.CustomResource,
		Labels:      map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
		Annotations: map[string]string{},
	}
}

func (d peerData) nodeA() nodetypes.Node {
	const wg = "9hjQzJ0m1l3L6q7yP2nJb1X4X0oVHq2m1c3rS5tU7vA="
	n := d.node(nodeA)
	n.IPAddresses = []nodetypes.Address{
		{Type: addressing.NodeInternalIP, IP: net.ParseIP(d.nodeIP4(nodeA))},
		{Type: addressing.NodeInternalIP, IP: net.ParseIP(d.nodeIP6(nodeA))},
		{Type: addressing.NodeExternalIP, IP: net.ParseIP(fmt.Sprintf("203.0.113.%d", d.l.net4))},
		{Type: addressing.NodeCiliumInternalIP, IP: net.ParseIP(d.pod4(1, 1))},
		{Type: addressing.NodeCiliumInternalIP, IP: net.ParseIP(d.pod6(1, 1))},
	}
	n.IPv4AllocCIDR = ciliumCIDR(d.pod4(1, 0) + "/24")
	n.IPv6AllocCIDR = ciliumCIDR(d.pod6(1, 0) + "/112")
	n.IPv4SecondaryAllocCIDRs = []*cidr.CIDR{ciliumCIDR(d.pod4(101, 0) + "/24")} // multi-pool IPAM
	n.IPv4HealthIP = net.ParseIP(d.pod4(1, 2))
	n.IPv6HealthIP = net.ParseIP(d.pod6(1, 2))
	n.IPv4IngressIP = net.ParseIP(d.pod4(1, 3))
	n.IPv6IngressIP = net.ParseIP(d.pod6(1, 3))
	n.EncryptionKey = 0
	n.WireguardPubKey = wg
	n.Annotations["network.cilium.io/wg-pub-key"] = wg
	n.Labels["topology.kubernetes.io/zone"] = "zone-a"
	n.BootID = "5b8a4d0c-3a51-4c5e-9a8e-0f1e2d3c4b5a"
	return n
}

// nodeB is IPv6 only.
func (d peerData) nodeB() nodetypes.Node {
	n := d.node(nodeB)
	n.IPAddresses = []nodetypes.Address{
		{Type: addressing.NodeInternalIP, IP: net.ParseIP(d.nodeIP6(nodeB))},
		{Type: addressing.NodeCiliumInternalIP, IP: net.ParseIP(d.pod6(2, 1))},
	}
	n.IPv6AllocCIDR = ciliumCIDR(d.pod6(2, 0) + "/112")
	n.IPv6HealthIP = net.ParseIP(d.pod6(2, 2))
	n.EncryptionKey = 3 // IPsec key index
	n.Labels["topology.kubernetes.io/zone"] = "zone-b"
	n.BootID = "7e1c2b3a-0000-4000-8000-00000000000b"
	return n
}

func (d peerData) nodeC() nodetypes.Node {
	n := d.node(nodeC)
	n.IPAddresses = []nodetypes.Address{{Type: addressing.NodeInternalIP, IP: net.ParseIP(d.nodeIP4(nodeC))}}
	n.IPv4AllocCIDR = ciliumCIDR(d.pod4(3, 0) + "/24")
	return n
}

func (d peerData) nodeD() nodetypes.Node {
	n := d.node(nodeD)
	n.IPAddresses = []nodetypes.Address{{Type: addressing.NodeInternalIP, IP: net.ParseIP(d.nodeIP4(nodeD))}}
	n.IPv4AllocCIDR = ciliumCIDR(d.pod4(4, 0) + "/24")
	n.BootID = "late"
	return n
}

// podLabels are a pod identity's security labels, as a CiliumIdentity
// carries them.
func (d peerData) podLabels(ns, sa string, pod map[string]string) map[string]string {
	m := map[string]string{
		"k8s:io.cilium.k8s.policy.cluster":                               d.l.name,
		"k8s:io.cilium.k8s.policy.serviceaccount":                        sa,
		"k8s:io.kubernetes.pod.namespace":                                ns,
		"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": ns,
	}
	for k, v := range pod {
		m["k8s:"+k] = v
	}
	return m
}

// endpoint is clustermesh-apiserver's ciliumEndpointMapper for a
// CiliumEndpoint with the given addresses.
func (d peerData) endpoint(ns, pod, sa string, id ciliumid.NumericIdentity, nodeIP string, ips ...string) []ciliumid.IPIdentityPair {
	var out []ciliumid.IPIdentityPair
	for _, ip := range ips {
		out = append(out, ciliumid.IPIdentityPair{
			IP: net.ParseIP(ip), HostIP: net.ParseIP(nodeIP), K8sNamespace: ns, K8sPodName: pod, K8sServiceAccount: sa,
			NamedPorts: []ciliumid.NamedPort{{Name: "http", Port: 8080, Protocol: "TCP"}, {Name: "metrics", Port: 9090, Protocol: "TCP"}},
			ID:         id,
			Key:        0,
		})
	}
	return out
}

// agentEndpoint is what IPIdentitySynchronizer.Upsert (pkg/ipcache, an
// agent in kvstore mode) writes for an endpoint: addresses from
// netip.Addr.AsSlice, Metadata the endpoint's global ID.
func (d peerData) agentEndpoint(ns, pod, node string, epID int, id ciliumid.NumericIdentity, nodeIP, ip string) ciliumid.IPIdentityPair {
	return ciliumid.IPIdentityPair{
		IP: netip.MustParseAddr(ip).AsSlice(), HostIP: netip.MustParseAddr(nodeIP).AsSlice(), ID: id, Key: 1,
		Metadata:     fmt.Sprintf("cilium-global:%s:%s:%d", d.l.name, node, epID),
		K8sNamespace: ns, K8sPodName: pod,
		NamedPorts: []ciliumid.NamedPort{{Name: "dns", Port: 53, Protocol: "UDP"}},
	}
}

// rebelBase is a dual-stack global service, as the operator's
// DefaultClusterServiceConverter makes it.
func (d peerData) rebelBase() cmstore.ClusterService {
	s := cmstore.NewClusterService("rebel-base", "default")
	s.Cluster, s.ClusterID, s.Shared, s.IncludeExternal = d.l.name, d.l.clusterID, true, true
	s.Labels["app"] = "rebel-base"
	s.Selector["app"] = "rebel-base"
	http := loadbalancer.NewL4Addr(loadbalancer.TCP, 80)
	grpc := loadbalancer.NewL4Addr(loadbalancer.TCP, 9090)
	front := cmstore.PortConfiguration{"http": &http, "grpc": &grpc}
	s.Frontends[fmt.Sprintf("10.96.%d.10", d.l.net4)] = front
	s.Frontends[fmt.Sprintf("fd00:96:%x::10", d.l.net6)] = front
	p8080 := loadbalancer.NewL4Addr(loadbalancer.TCP, 8080)
	p9090 := loadbalancer.NewL4Addr(loadbalancer.TCP, 9090)
	back := cmstore.PortConfiguration{"http": &p8080, "grpc": &p9090}
	for _, ip := range []string{d.pod4(1, 5), d.pod6(1, 5), d.pod6(2, 7)} {
		s.Backends[ip] = back
	}
	s.Hostnames[d.pod4(1, 5)] = "rebel-base-0"
	s.Zones[d.pod4(1, 5)] = cmstore.BackendZone{Zone: "zone-a", ForZones: []cmstore.ForZone{{Name: "zone-a"}, {Name: "zone-b"}}}
	s.Zones[d.pod6(2, 7)] = cmstore.BackendZone{Zone: "zone-b", ForZones: []cmstore.ForZone{}}
	return s
}

// headless is a headless global service: no frontend, UDP and SCTP ports.
func (d peerData) headless() cmstore.ClusterService {
	s := cmstore.NewClusterService("db", "default")
	s.Cluster, s.ClusterID, s.Shared, s.IncludeExternal = d.l.name, d.l.clusterID, true, true
	dns := loadbalancer.NewL4Addr(loadbalancer.UDP, 5353)
	sctp := loadbalancer.NewL4Addr(loadbalancer.SCTP, 3868)
	s.Backends[d.pod4(1, 6)] = cmstore.PortConfiguration{"": &dns, "diameter": &sctp}
	return s
}

// Cilium's values in our types, field by field (not through JSON).

func ourCIDR(c *cidr.CIDR) *schema.CIDR {
	if c == nil {
		return nil
	}
	p, ok := netipx.FromStdIPNet(c.IPNet)
	if !ok {
		panic("invalid Cilium CIDR " + c.String())
	}
	return schema.NewCIDR(p)
}

func ourNode(n nodetypes.Node) schema.Node {
	out := schema.Node{
		Name: n.Name, Cluster: n.Cluster,
		IPv4AllocCIDR: ourCIDR(n.IPv4AllocCIDR), IPv6AllocCIDR: ourCIDR(n.IPv6AllocCIDR),
		IPv4HealthIP: n.IPv4HealthIP, IPv6HealthIP: n.IPv6HealthIP, IPv4IngressIP: n.IPv4IngressIP, IPv6IngressIP: n.IPv6IngressIP,
		ClusterID: n.ClusterID, Source: string(n.Source), EncryptionKey: n.EncryptionKey,
		Labels: maps.Clone(n.Labels), Annotations: maps.Clone(n.Annotations),
		WireguardPubKey: n.WireguardPubKey, BootID: n.BootID,
	}
	for _, a := range n.IPAddresses {
		out.IPAddresses = append(out.IPAddresses, schema.NodeAddress{Type: string(a.Type), IP: a.IP})
	}
	for _, c := range n.IPv4SecondaryAllocCIDRs {
		out.IPv4SecondaryAllocCIDRs = append(out.IPv4SecondaryAllocCIDRs, ourCIDR(c))
	}
	for _, c := range n.IPv6SecondaryAllocCIDRs {
		out.IPv6SecondaryAllocCIDRs = append(out.IPv6SecondaryAllocCIDRs, ourCIDR(c))
	}
	return out
}

func ourLabels(t *testing.T, ls labels.Labels) identity.Labels {
	t.Helper()
	var out []identity.Label
	for _, l := range ls {
		ol, err := identity.NewLabel(l.Source, l.Key, l.Value)
		if err != nil {
			t.Fatalf("Cilium label %s: %v", l.String(), err)
		}
		out = append(out, ol)
	}
	return identity.NewLabels(out...)
}

func ourIPEntry(t *testing.T, p ciliumid.IPIdentityPair) (netip.Prefix, schema.IPEntry) {
	t.Helper()
	addr, ok := netip.AddrFromSlice(p.IP)
	if !ok {
		t.Fatalf("invalid IP %v", p.IP)
	}
	addr = addr.Unmap()
	prefix := netip.PrefixFrom(addr, addr.BitLen())
	if p.Mask != nil {
		ones, _ := p.Mask.Size()
		prefix = netip.PrefixFrom(addr, ones)
	}
	e := schema.IPEntry{IP: p.IP, Mask: p.Mask, HostIP: p.HostIP, ID: uint32(p.ID), Key: p.Key, Metadata: p.Metadata,
		K8sNamespace: p.K8sNamespace, K8sPodName: p.K8sPodName, K8sServiceAccount: p.K8sServiceAccount}
	for _, np := range p.NamedPorts {
		e.NamedPorts = append(e.NamedPorts, schema.NamedPort{Name: np.Name, Port: np.Port, Protocol: np.Protocol})
	}
	return prefix, e
}

func ourPortConfigs(m map[string]cmstore.PortConfiguration) map[string]schema.PortConfiguration {
	out := make(map[string]schema.PortConfiguration, len(m))
	for ip, pc := range m {
		ports := schema.PortConfiguration{}
		for name, a := range pc {
			ports[name] = &schema.L4Addr{Protocol: string(a.Protocol), Port: a.Port}
		}
		out[ip] = ports
	}
	return out
}

func ourService(s cmstore.ClusterService) schema.ClusterService {
	out := schema.ClusterService{
		Cluster: s.Cluster, Namespace: s.Namespace, Name: s.Name,
		Frontends: ourPortConfigs(s.Frontends), Backends: ourPortConfigs(s.Backends),
		Hostnames: maps.Clone(s.Hostnames), Labels: maps.Clone(s.Labels), Selector: maps.Clone(s.Selector),
		IncludeExternal: s.IncludeExternal, Shared: s.Shared, ClusterID: s.ClusterID,
	}
	if len(s.Zones) > 0 {
		out.Zones = map[string]schema.BackendZone{}
		for ip, z := range s.Zones {
			oz := schema.BackendZone{Zone: z.Zone}
			for _, f := range z.ForZones {
				oz.ForZones = append(oz.ForZones, schema.ForZone{Name: f.Name})
			}
			out.Zones[ip] = oz
		}
	}
	return out
}

// wantState is what Cilium has written, in our types.
type wantState struct {
	nodes      map[string]schema.Node
	identities map[identity.NumericIdentity]identity.Labels
	// identityValues are the values Cilium stored for them.
	identityValues map[identity.NumericIdentity]string
	ips            map[netip.Prefix]schema.IPEntry
	services       map[string]schema.ClusterService
}

func newWantState() *wantState {
	return &wantState{nodes: map[string]schema.Node{}, identities: map[identity.NumericIdentity]identity.Labels{},
		identityValues: map[identity.NumericIdentity]string{},
		ips:            map[netip.Prefix]schema.IPEntry{}, services: map[string]schema.ClusterService{}}
}

var sinkCmpOpts = cmp.Options{
	cmp.Comparer(func(a, b net.IP) bool { return a.Equal(b) }),
	cmp.Comparer(func(a, b net.IPMask) bool { return bytes.Equal(a, b) }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b identity.Labels) bool {
		return a.Equal(b) && a.SortedKVStoreString() == b.SortedKVStoreString()
	}),
	// nil and empty maps and slices mean the same in JSON's eyes (but
	// addresses have their own comparer).
	cmp.FilterPath(func(p cmp.Path) bool {
		t := p.Last().Type()
		return t != reflect.TypeFor[net.IP]() && t != reflect.TypeFor[net.IPMask]()
	}, cmpopts.EquateEmpty()),
}

// diff compares the sink with what Cilium wrote ("" when they agree).
func (w *wantState) diff(s *recordingSink) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cmp.Diff(w.nodes, s.nodes, sinkCmpOpts) + cmp.Diff(w.identities, s.identities, sinkCmpOpts) +
		cmp.Diff(w.ips, s.ips, sinkCmpOpts) + cmp.Diff(w.services, s.services, sinkCmpOpts)
}

// recordingSink keeps the full values our agent hands over.
type recordingSink struct {
	mu         sync.Mutex
	nodes      map[string]schema.Node
	identities map[identity.NumericIdentity]identity.Labels
	ips        map[netip.Prefix]schema.IPEntry
	services   map[string]schema.ClusterService
	drains     int
	clusters   map[string]bool // the cluster names the agent used
}

func newRecordingSink() *recordingSink {
	return &recordingSink{nodes: map[string]schema.Node{}, identities: map[identity.NumericIdentity]identity.Labels{},
		ips: map[netip.Prefix]schema.IPEntry{}, services: map[string]schema.ClusterService{}, clusters: map[string]bool{}}
}

func (s *recordingSink) lock(cluster string) func() {
	s.mu.Lock()
	s.clusters[cluster] = true
	return s.mu.Unlock
}

func (s *recordingSink) UpsertNode(c string, n schema.Node) { defer s.lock(c)(); s.nodes[n.Name] = n }
func (s *recordingSink) DeleteNode(c, name string)          { defer s.lock(c)(); delete(s.nodes, name) }
func (s *recordingSink) UpsertIdentity(c string, id identity.NumericIdentity, l identity.Labels) {
	defer s.lock(c)()
	s.identities[id] = l
}
func (s *recordingSink) DeleteIdentity(c string, id identity.NumericIdentity) {
	defer s.lock(c)()
	delete(s.identities, id)
}
func (s *recordingSink) UpsertIP(c string, p netip.Prefix, e schema.IPEntry) {
	defer s.lock(c)()
	s.ips[p] = e
}
func (s *recordingSink) DeleteIP(c string, p netip.Prefix) { defer s.lock(c)(); delete(s.ips, p) }
func (s *recordingSink) UpsertService(c string, cs schema.ClusterService) {
	defer s.lock(c)()
	s.services[cs.Namespace+"/"+cs.Name] = cs
}
func (s *recordingSink) DeleteService(c, ns, name string) {
	defer s.lock(c)()
	delete(s.services, ns+"/"+name)
}
func (s *recordingSink) Drain(c string) {
	defer s.lock(c)()
	s.drains++
	clear(s.nodes)
	clear(s.identities)
	clear(s.ips)
	clear(s.services)
}

func (s *recordingSink) drainCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drains
}

func (s *recordingSink) clusterNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Keys(s.clusters))
	sort.Strings(out)
	return out
}

// A Cilium v1.20 cluster whose operator exports EndpointSlices only
// (clustermesh-service-v2 endpointslice-only: its cluster config says
// endpointslices-only, and it writes no ClusterService nor their synced
// canary): our agent reads the rest and is ready without waiting for
// services, as Cilium's own agents are.
func TestCiliumWritesEndpointSlicesOnly(t *testing.T) {
	if os.Getenv(layoutEnv) != "" {
		t.Skip("the child process runs TestCiliumWritesWeReadLayout only")
	}
	// Cilium's default layout (255): nothing here changes Cilium's
	// process-global identity layout.
	l := writesLayouts[0]
	ctx := t.Context()
	log := ciliumLogger(t)
	e := startTLSEtcd(t)
	if err := etcdinit.ClusterMeshEtcdInit(ctx, log, e.Etcd(t, "root"), l.name); err != nil {
		t.Fatalf("Cilium's ClusterMeshEtcdInit: %v", err)
	}
	cli := connectCilium(t, e.CiliumConfigFile(t, "admin-"+l.name), ciliumkv.ExtraOptions{})
	exportsMCS := false
	stopEnforcer, err := clustercfg.Enforce(ctx, l.name, cmtypes.CiliumClusterConfig{
		ID: l.clusterID,
		Capabilities: cmtypes.CiliumClusterConfigCapabilities{
			SyncedCanaries: true, MaxConnectedClusters: l.max, ServiceExportsEnabled: &exportsMCS,
			EndpointSlicesExportMode: cmtypes.EndpointSlicesExportModeEndpointSlicesOnly,
		},
	}, cli, log)
	if err != nil {
		t.Fatalf("Cilium's clustercfg.Enforce: %v", err)
	}
	t.Cleanup(stopEnforcer)
	factory := ciliumstore.NewFactory(log, ciliumstore.MetricsProvider())
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	newStore := func(prefix string, opts ...ciliumstore.WSSOpt) ciliumstore.SyncStore {
		s := factory.NewSyncStore(l.name, cli, prefix, opts...)
		wg.Go(func() { s.Run(sctx) })
		return s
	}
	nodes := newStore(nodestore.NodeStorePrefix)
	identities := newStore(ciliumkv.JoinKey(writerIdentitiesPath, "id"), ciliumstore.WSSWithSyncedKeyOverride(writerIdentitiesPath))
	ips := newStore(ciliumkv.JoinKey(writerIPPath, writerAddressSpace), ciliumstore.WSSWithSyncedKeyOverride(writerIPPath))

	d, want := newPeerData(l), newWantState()
	n := d.nodeA()
	if err := nodes.UpsertKey(ctx, &n); err != nil {
		t.Fatal(err)
	}
	want.nodes[n.Name] = ourNode(n)
	ourLayout, err := identity.NewLayout(l.max)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ourLayout.Make(identity.ClusterID(l.clusterID), 1)
	if err != nil {
		t.Fatal(err)
	}
	lbls := labels.Map2Labels(d.podLabels("default", "x-wing", map[string]string{"app": "x-wing"}), "")
	if err := identities.UpsertKey(ctx, ciliumstore.NewKVPair(id.String(), string(lbls.SortedList()))); err != nil {
		t.Fatal(err)
	}
	want.identities[id] = ourLabels(t, lbls)
	for _, p := range d.endpoint("default", "x-wing-1", "x-wing", ciliumid.NumericIdentity(id), d.nodeIP4(nodeA), d.pod4(1, 5), d.pod6(1, 5)) {
		if err := ips.UpsertKey(ctx, &p); err != nil {
			t.Fatal(err)
		}
		prefix, entry := ourIPEntry(t, p)
		want.ips[prefix] = entry
	}
	for _, s := range []ciliumstore.SyncStore{nodes, identities, ips} {
		if err := s.Synced(ctx); err != nil {
			t.Fatal(err)
		}
	}

	sink := newRecordingSink()
	c, err := remote.New(remote.Config{
		Name: l.name, Client: e.ClientConfig(t, "remote"), Paths: schema.DefaultPaths(),
		LocalName: "local", LocalID: 1, MaxConnectedClusters: l.max,
		Registry: remote.NewRegistry("local", 1), Sink: sink,
		Backoff: backoff.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.WithoutCancel(ctx))
	var awg sync.WaitGroup
	awg.Go(func() { _ = c.Run(actx) })
	t.Cleanup(func() { acancel(); awg.Wait() })

	waitPeer(t, c, "our agent ready on a Cilium cluster that exports no ClusterService", func() bool { return c.Status().Ready })
	st := c.Status()
	if len(st.Rejected) != 0 || !st.Synced[remote.KindServices] || st.ClusterID != l.clusterID {
		t.Fatalf("status %+v", st)
	}
	if diff := want.diff(sink); diff != "" {
		t.Fatalf("what our agent received differs from what Cilium wrote (-Cilium +ours):\n%s", diff)
	}
}
