package interop

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	clientv3 "go.etcd.io/etcd/client/v3"
	"sigs.k8s.io/yaml"

	"github.com/cilium/cilium/pkg/allocator"
	"github.com/cilium/cilium/pkg/cidr"
	"github.com/cilium/cilium/pkg/clustermesh/clustercfg"
	serviceStore "github.com/cilium/cilium/pkg/clustermesh/store"
	cmtypes "github.com/cilium/cilium/pkg/clustermesh/types"
	ciliumidentity "github.com/cilium/cilium/pkg/identity"
	"github.com/cilium/cilium/pkg/identity/key"
	"github.com/cilium/cilium/pkg/idpool"
	k8sconst "github.com/cilium/cilium/pkg/k8s/apis/cilium.io"
	ciliumkv "github.com/cilium/cilium/pkg/kvstore"
	kvstoreallocator "github.com/cilium/cilium/pkg/kvstore/allocator"
	"github.com/cilium/cilium/pkg/kvstore/store"
	ciliumlabels "github.com/cilium/cilium/pkg/labels"
	nodeStore "github.com/cilium/cilium/pkg/node/store"
	nodeTypes "github.com/cilium/cilium/pkg/node/types"
	"github.com/cilium/cilium/pkg/source"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// The prefixes of Cilium's identity and ipcache stores: copies of
// pkg/identity/cache.IdentitiesPath and pkg/ipcache.IPIdentitiesPath, whose
// packages import Cilium's Kubernetes client and do not build against our
// client-go.
var (
	ciliumIdentitiesPath   = ciliumkv.JoinKey(ciliumkv.BaseKeyPrefix, "state", "identities", "v1")
	ciliumIPIdentitiesPath = ciliumkv.JoinKey(ciliumkv.BaseKeyPrefix, "state", "ip", "v1")
	ciliumIPAddressSpace   = "default" // pkg/ipcache.DefaultAddressSpace
)

// The kinds a Cilium agent reads from a remote cluster, by the prefix its
// WatchStoreManager starts them on (pkg/clustermesh/remote_cluster.go).
var ciliumKinds = map[string]string{
	"nodes":      nodeStore.NodeStorePrefix,
	"services":   serviceStore.ServiceStorePrefix,
	"ip":         ciliumIPIdentitiesPath,
	"identities": ciliumIdentitiesPath,
}

// ciliumReader is what a Cilium v1.20 agent runs for one remote cluster
// (pkg/clustermesh remoteCluster.Run), with Cilium's own code: its etcd
// client connected with the clustermesh options, the cluster config read
// and validated, a WatchStoreManager that starts each store on its synced
// canary, restartable watch stores with Cilium's key creators and
// validators for nodes, services and ipcache entries, and the remote
// identity cache of Cilium's allocator. Only the final observers (Cilium's
// node manager, service merger, ipcache and policy engine) are replaced by
// maps, and the ipcache entry and identity validators are copies of
// Cilium's (their packages do not build here).
type ciliumReader struct {
	user    string
	remote  string
	logs    *logCapture
	log     *slog.Logger
	backend ciliumkv.BackendOperations
	config  cmtypes.CiliumClusterConfig
	// clusterID is the remote's ID from its cluster config, which Cilium's
	// validators compare keys against.
	clusterID uint32

	mu       sync.Mutex
	nodes    map[string]nodeTypes.Node
	services map[string]serviceStore.ClusterService
	ips      map[string]ciliumidentity.IPIdentityPair
	ids      map[idpool.ID]*key.GlobalIdentity
	started  map[string]int // kind → times the manager started its store
	initial  map[string]int // kind → entries known when its store synced
	synced   map[string]chan struct{}
	done     chan struct{} // closed when the manager stopped
}

// ciliumEtcdConfigFile writes the etcd configuration file Cilium reads for
// a remote cluster, the way `clustermesh connect` writes it into the mesh
// Secret (cli/mesh/connect.go: our kvstore.ClientConfig marshalled with
// sigs.k8s.io/yaml, with the cluster-id and pod-cidrs trust anchors that
// Cilium must ignore), with a fresh client certificate whose common name is
// user.
func ciliumEtcdConfigFile(t testing.TB, env *kvtest.Env, user string, clusterID uint32, podCIDRs []string) string {
	t.Helper()
	cc := env.ClientConfig(t, user)
	dir := t.TempDir()
	caFile, err := env.CA.WriteCertFile(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(kvstore.ClientConfig{
		Endpoints: cc.Endpoints, TrustedCAFile: caFile, CertFile: cc.CertFile, KeyFile: cc.KeyFile,
		ClusterID: clusterID, PodCIDRs: podCIDRs,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "etcd-config.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newClientMu serializes ciliumkv.NewClient: it stores the options in the
// etcd backend module, a package-level value.
var newClientMu sync.Mutex

// startCiliumReader connects to env as user, reads and validates remote's
// cluster config as local, and starts the stores; everything stops at
// cleanup.
func startCiliumReader(t *testing.T, env *kvtest.Env, user, remote string, local cmtypes.ClusterInfo, anchorID uint32, anchorCIDRs []string) *ciliumReader {
	t.Helper()
	logs, log := newLogCapture("Cilium reader " + user)
	r := &ciliumReader{
		user: user, remote: remote, logs: logs, log: log,
		nodes: map[string]nodeTypes.Node{}, services: map[string]serviceStore.ClusterService{},
		ips: map[string]ciliumidentity.IPIdentityPair{}, ids: map[idpool.ID]*key.GlobalIdentity{},
		started: map[string]int{}, initial: map[string]int{}, synced: map[string]chan struct{}{},
		done: make(chan struct{}),
	}
	for kind := range ciliumKinds {
		r.synced[kind] = make(chan struct{})
	}
	cfgPath := ciliumEtcdConfigFile(t, env, user, anchorID, anchorCIDRs)

	// The etcd client, with the options of Cilium's clustermesh
	// (common.remoteCluster.makeExtraOpts; its cluster-lock gRPC
	// interceptors live in a package that does not build here).
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	newClientMu.Lock()
	backend, errCh := ciliumkv.NewClient(ctx, log, ciliumkv.EtcdBackendName,
		map[string]string{ciliumkv.EtcdOptionConfig: cfgPath},
		ciliumkv.ExtraOptions{NoLockQuorumCheck: true, ClusterName: remote, NoEndpointStatusChecks: true})
	newClientMu.Unlock()
	t.Cleanup(func() {
		if backend != nil {
			backend.Close()
		}
		cancel()
	})
	select {
	case err := <-errCh:
		if err != nil {
			logs.RequireNoWarnings(t)
			t.Fatalf("Cilium's etcd client as %s: %v", user, err)
		}
	case <-time.After(20 * time.Second):
		logs.RequireNoWarnings(t)
		t.Fatalf("Cilium's etcd client as %s did not report itself connected within 20s "+
			"(it lists %s as a prefix first: can user %s read that range?)", user, ciliumkv.HeartbeatPath, user)
	}
	r.backend = backend

	// The cluster config, as remoteCluster.getClusterConfig and Run do.
	cfg, err := clustercfg.Get(ctx, remote, backend)
	if err != nil {
		t.Fatalf("Cilium reads the cluster config of %s as %s: %v", remote, user, err)
	}
	if err := local.ValidateRemoteConfig(cfg); err != nil {
		t.Fatalf("Cilium (max-connected-clusters %d) rejects the cluster config of %s: %v", local.MaxConnectedClusters, remote, err)
	}
	if !cfg.Capabilities.SyncedCanaries {
		t.Fatalf("cluster config of %s does not advertise syncedCanaries: Cilium would start every store at once", remote)
	}
	r.config, r.clusterID = cfg, cfg.ID

	factory := store.NewFactory(log, store.MetricsProvider())
	onSync := func(kind string, count func() int) func(context.Context) {
		return func(context.Context) {
			r.mu.Lock()
			r.initial[kind] = count()
			r.mu.Unlock()
			close(r.synced[kind])
		}
	}
	nodes := factory.NewWatchStore(remote,
		nodeStore.ValidatingKeyCreator(
			nodeStore.ClusterNameValidator(remote),
			nodeStore.NameValidator(),
			nodeStore.ClusterIDValidator(&r.clusterID),
		),
		nodeStore.NewNodeObserver(readerNodes{r}, source.ClusterMesh),
		store.RWSWithOnSyncCallback(onSync("nodes", func() int { return len(r.nodes) })),
	)
	services := factory.NewWatchStore(remote,
		serviceStore.KeyCreator(
			serviceStore.ClusterNameValidator(remote),
			serviceStore.NamespacedNameValidator(),
			serviceStore.ClusterIDValidator(&r.clusterID),
		),
		readerServices{r},
		store.RWSWithOnSyncCallback(onSync("services", func() int { return len(r.services) })),
	)
	ips := factory.NewWatchStore(remote,
		func() store.Key { return &ciliumidentity.IPIdentityPair{} },
		readerIPs{r, ipIdentityValidator(r.clusterID)},
		store.RWSWithOnSyncCallback(onSync("ip", func() int { return len(r.ips) })),
	)

	// Identities: pkg/identity/cache WatchRemoteIdentities, with the
	// allocator's remote cache and the kvstore allocator backend.
	events := make(chan allocator.AllocatorEvent)
	stopEvents := make(chan struct{})
	go r.consumeIdentityEvents(events, stopEvents)
	idBackend, err := kvstoreallocator.NewKVStoreBackend(log, kvstoreallocator.KVStoreBackendConfiguration{
		BasePath: ciliumIdentitiesPath, Typ: &key.GlobalIdentity{}, Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	remoteAlloc, err := allocator.NewAllocator(log, &key.GlobalIdentity{}, idBackend,
		allocator.WithEvents(events), allocator.WithoutGC(), allocator.WithoutAutostart(),
		allocator.WithCacheValidator(identityClusterIDValidator(r.clusterID)),
		allocator.WithCacheValidator(identityClusterNameValidator(remote)))
	if err != nil {
		t.Fatal(err)
	}
	mainAlloc, err := allocator.NewAllocator(log, &key.GlobalIdentity{}, idBackend,
		allocator.WithEvents(events), allocator.WithoutGC(), allocator.WithoutAutostart())
	if err != nil {
		t.Fatal(err)
	}
	remoteIDs := mainAlloc.NewRemoteCache(remote, remoteAlloc)

	mgr := factory.NewWatchStoreManager(backend, remote)
	register := func(kind string, run func(context.Context)) {
		mgr.Register(ciliumKinds[kind], func(ctx context.Context) {
			r.mu.Lock()
			r.started[kind]++
			r.mu.Unlock()
			run(ctx)
		})
	}
	register("nodes", func(ctx context.Context) {
		nodes.Watch(ctx, backend, ciliumkv.JoinKey(nodeStore.NodeStorePrefix, remote))
	})
	register("services", func(ctx context.Context) {
		services.Watch(ctx, backend, ciliumkv.JoinKey(serviceStore.ServiceStorePrefix, remote))
	})
	register("ip", func(ctx context.Context) {
		ips.Watch(ctx, backend, ciliumkv.JoinKey(ciliumIPIdentitiesPath, ciliumIPAddressSpace))
	})
	register("identities", func(ctx context.Context) {
		remoteIDs.Watch(ctx, onSync("identities", func() int { return len(r.ids) }))
	})
	mctx, mcancel := context.WithCancel(ctx)
	go func() {
		defer close(r.done)
		mgr.Run(mctx)
	}()
	t.Cleanup(func() {
		mcancel()
		<-r.done
		close(stopEvents)
	})
	return r
}

// consumeIdentityEvents is the receiving end of the allocator's events (the
// identity cache's in Cilium): it keeps the identities and closes the sync
// event's Done once every earlier event is applied.
func (r *ciliumReader) consumeIdentityEvents(events <-chan allocator.AllocatorEvent, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case ev := <-events:
			r.mu.Lock()
			switch ev.Typ {
			case allocator.AllocatorChangeUpsert:
				gi, _ := ev.Key.(*key.GlobalIdentity)
				r.ids[ev.ID] = gi
			case allocator.AllocatorChangeDelete:
				delete(r.ids, ev.ID)
			}
			r.mu.Unlock()
			if ev.Done != nil {
				close(ev.Done)
			}
		}
	}
}

// identityClusterIDValidator is pkg/identity/cache's clusterIDValidator.
func identityClusterIDValidator(clusterID uint32) allocator.CacheValidator {
	lo := idpool.ID(ciliumidentity.GetMinimalAllocationIdentity(clusterID))
	hi := idpool.ID(ciliumidentity.GetMaximumAllocationIdentity(clusterID))
	return func(_ allocator.AllocatorChangeKind, id idpool.ID, _ allocator.AllocatorKey) error {
		if id < lo || id > hi {
			return fmt.Errorf("ID %d does not belong to the allocation range of cluster ID %d", id, clusterID)
		}
		return nil
	}
}

// identityClusterNameValidator is pkg/identity/cache's clusterNameValidator.
func identityClusterNameValidator(clusterName string) allocator.CacheValidator {
	return func(kind allocator.AllocatorChangeKind, _ idpool.ID, ak allocator.AllocatorKey) error {
		if kind != allocator.AllocatorChangeUpsert {
			return nil
		}
		gi, ok := ak.(*key.GlobalIdentity)
		if !ok {
			return fmt.Errorf("unsupported key type %T", ak)
		}
		found := false
		for _, lbl := range gi.LabelArray {
			if lbl.Key != k8sconst.PolicyLabelCluster {
				continue
			}
			switch {
			case lbl.Source != ciliumlabels.LabelSourceK8s:
				return fmt.Errorf("unexpected source for cluster label: got %s, expected %s", lbl.Source, ciliumlabels.LabelSourceK8s)
			case lbl.Value != clusterName:
				return fmt.Errorf("unexpected cluster name: got %s, expected %s", lbl.Value, clusterName)
			default:
				found = true
			}
		}
		if !found {
			return fmt.Errorf("could not find expected label %s", k8sconst.PolicyLabelCluster)
		}
		return nil
	}
}

// ipIdentityValidator is pkg/ipcache's WithIdentityValidator, which the
// agent sets with the remote's cluster ID.
func ipIdentityValidator(clusterID uint32) func(*ciliumidentity.IPIdentityPair) error {
	lo := ciliumidentity.GetMinimalAllocationIdentity(clusterID)
	hi := ciliumidentity.GetMaximumAllocationIdentity(clusterID)
	return func(pair *ciliumidentity.IPIdentityPair) error {
		switch {
		case pair.ID >= lo && pair.ID <= hi:
			return nil
		case pair.ID < ciliumidentity.MinimalNumericIdentity:
			return nil
		default:
			return fmt.Errorf("ID %d does not belong to the allocation range of cluster ID %d", pair.ID, clusterID)
		}
	}
}

// readerNodes is the node manager behind Cilium's NodeObserver.
type readerNodes struct{ r *ciliumReader }

func (o readerNodes) NodeUpdated(n nodeTypes.Node) {
	o.r.mu.Lock()
	o.r.nodes[n.Name] = n
	o.r.mu.Unlock()
}

func (o readerNodes) NodeDeleted(n nodeTypes.Node) {
	o.r.mu.Lock()
	delete(o.r.nodes, n.Name)
	o.r.mu.Unlock()
}

// readerServices stands for Cilium's shared services observer.
type readerServices struct{ r *ciliumReader }

func (o readerServices) OnUpdate(k store.Key) {
	svc := k.(*serviceStore.ValidatingClusterService).ClusterService
	o.r.mu.Lock()
	o.r.services[svc.NamespaceServiceName().String()] = svc
	o.r.mu.Unlock()
}

func (o readerServices) OnDelete(k store.NamedKey) {
	svc := k.(*serviceStore.ValidatingClusterService).ClusterService
	o.r.mu.Lock()
	delete(o.r.services, svc.NamespaceServiceName().String())
	o.r.mu.Unlock()
}

// readerIPs stands for Cilium's IPIdentityWatcher (pkg/ipcache), with its
// validation and its warning.
type readerIPs struct {
	r        *ciliumReader
	validate func(*ciliumidentity.IPIdentityPair) error
}

func (o readerIPs) OnUpdate(k store.Key) {
	pair := k.(*ciliumidentity.IPIdentityPair)
	ip := pair.PrefixString()
	if ip == "<nil>" {
		o.r.log.Warn("Ignoring entry with nil IP")
		return
	}
	if err := o.validate(pair); err != nil {
		o.r.log.Warn("Skipping invalid upsertion event", "error", err, "ipAddr", ip)
		return
	}
	o.r.mu.Lock()
	o.r.ips[ip] = *pair
	o.r.mu.Unlock()
}

func (o readerIPs) OnDelete(k store.NamedKey) {
	pair := k.(*ciliumidentity.IPIdentityPair)
	o.r.mu.Lock()
	delete(o.r.ips, pair.PrefixString())
	o.r.mu.Unlock()
}

// state returns what the reader holds, in the neutral view.
func (r *ciliumReader) state() meshState {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := newMeshState()
	for name, n := range r.nodes {
		s.Nodes[name] = ciliumNodeView(n)
	}
	for name, svc := range r.services {
		s.Services[name] = ciliumServiceView(svc)
	}
	for name, pair := range r.ips {
		s.IPs[name] = ciliumIPView(pair)
	}
	for id, gi := range r.ids {
		s.Identities[uint32(id)] = ciliumIdentityView(gi)
	}
	return s
}

// waitSynced waits until the store of kind reported its initial list.
func (r *ciliumReader) waitSynced(t *testing.T, kind string, timeout time.Duration) {
	t.Helper()
	select {
	case <-r.synced[kind]:
	case <-time.After(timeout):
		r.logs.RequireNoWarnings(t)
		t.Fatalf("Cilium reader %s: the %s store did not sync within %v (started %d times: is the synced canary %s of cluster %s there?)",
			r.user, kind, timeout, r.startedCount(kind), ciliumkv.JoinKey(ciliumkv.SyncedPrefix, r.remote, ciliumKinds[kind]), r.remote)
	}
}

func (r *ciliumReader) startedCount(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started[kind]
}

func (r *ciliumReader) initialCount(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.initial[kind]
}

// meshState is a cluster's exported state in a view neutral to both code
// bases: addresses and prefixes as canonical text, ports as
// "PROTO:port", so that our values and Cilium's compare field by field.
type meshState struct {
	Nodes      map[string]nodeView    // by node name
	Services   map[string]serviceView // by namespace/name
	IPs        map[string]ipView      // by the key's name: "10.0.0.1" or "10.0.0.0/24"
	Identities map[uint32]identityView
}

func newMeshState() meshState {
	return meshState{Nodes: map[string]nodeView{}, Services: map[string]serviceView{},
		IPs: map[string]ipView{}, Identities: map[uint32]identityView{}}
}

type nodeView struct {
	Name, Cluster                                            string
	Addresses                                                []string // "Type IP"
	IPv4AllocCIDR, IPv6AllocCIDR                             string
	IPv4SecondaryAllocCIDRs, IPv6SecondaryAllocCIDRs         []string
	IPv4HealthIP, IPv6HealthIP, IPv4IngressIP, IPv6IngressIP string
	ClusterID                                                uint32
	EncryptionKey                                            uint8
	Labels, Annotations                                      map[string]string
	WireguardPubKey, BootID                                  string
}

type serviceView struct {
	Cluster, Namespace, Name string
	Frontends, Backends      map[string]map[string]string // IP → port name → "PROTO:port"
	Hostnames                map[string]string
	Zones                    map[string]string // IP → "zone for [zones]"
	Labels, Selector         map[string]string
	IncludeExternal, Shared  bool
	ClusterID                uint32
}

type ipView struct {
	IP                                          string
	MaskBits                                    int // -1: no mask (a host entry)
	HostIP                                      string
	ID                                          uint32
	Key                                         uint8
	Metadata                                    string
	K8sNamespace, K8sPodName, K8sServiceAccount string
	NamedPorts                                  []string // "name PROTO:port"
}

type identityView struct {
	Raw    string   // the kvstore label string
	Labels []string // "source:key=value", sorted
}

func ipText(ip net.IP) string {
	if ip == nil {
		return ""
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return fmt.Sprintf("invalid(%x)", []byte(ip))
	}
	return a.Unmap().String()
}

func ipNetText(n *net.IPNet) string {
	if n == nil {
		return ""
	}
	a, ok := netip.AddrFromSlice(n.IP)
	ones, bits := n.Mask.Size()
	if !ok || bits == 0 {
		return fmt.Sprintf("invalid(%v)", n)
	}
	return netip.PrefixFrom(a.Unmap(), ones).String()
}

func ciliumCIDRText(c *cidr.CIDR) string {
	if c == nil {
		return ""
	}
	return ipNetText(c.IPNet)
}

func ourCIDRText(c *schema.CIDR) string {
	if c == nil {
		return ""
	}
	return c.Prefix.String()
}

func maskBits(m net.IPMask) int {
	if m == nil {
		return -1
	}
	ones, _ := m.Size()
	return ones
}

func ourNodeView(n schema.Node) nodeView {
	v := nodeView{
		Name: n.Name, Cluster: n.Cluster,
		IPv4AllocCIDR: ourCIDRText(n.IPv4AllocCIDR), IPv6AllocCIDR: ourCIDRText(n.IPv6AllocCIDR),
		IPv4HealthIP: ipText(n.IPv4HealthIP), IPv6HealthIP: ipText(n.IPv6HealthIP),
		IPv4IngressIP: ipText(n.IPv4IngressIP), IPv6IngressIP: ipText(n.IPv6IngressIP),
		ClusterID: n.ClusterID, EncryptionKey: n.EncryptionKey,
		Labels: n.Labels, Annotations: n.Annotations, WireguardPubKey: n.WireguardPubKey, BootID: n.BootID,
	}
	for _, a := range n.IPAddresses {
		v.Addresses = append(v.Addresses, a.Type+" "+ipText(a.IP))
	}
	for _, c := range n.IPv4SecondaryAllocCIDRs {
		v.IPv4SecondaryAllocCIDRs = append(v.IPv4SecondaryAllocCIDRs, ourCIDRText(c))
	}
	for _, c := range n.IPv6SecondaryAllocCIDRs {
		v.IPv6SecondaryAllocCIDRs = append(v.IPv6SecondaryAllocCIDRs, ourCIDRText(c))
	}
	return v
}

func ciliumNodeView(n nodeTypes.Node) nodeView {
	v := nodeView{
		Name: n.Name, Cluster: n.Cluster,
		IPv4AllocCIDR: ciliumCIDRText(n.IPv4AllocCIDR), IPv6AllocCIDR: ciliumCIDRText(n.IPv6AllocCIDR),
		IPv4HealthIP: ipText(n.IPv4HealthIP), IPv6HealthIP: ipText(n.IPv6HealthIP),
		IPv4IngressIP: ipText(n.IPv4IngressIP), IPv6IngressIP: ipText(n.IPv6IngressIP),
		ClusterID: n.ClusterID, EncryptionKey: n.EncryptionKey,
		Labels: n.Labels, Annotations: n.Annotations, WireguardPubKey: n.WireguardPubKey, BootID: n.BootID,
	}
	for _, a := range n.IPAddresses {
		v.Addresses = append(v.Addresses, string(a.Type)+" "+ipText(a.IP))
	}
	for _, c := range n.IPv4SecondaryAllocCIDRs {
		v.IPv4SecondaryAllocCIDRs = append(v.IPv4SecondaryAllocCIDRs, ciliumCIDRText(c))
	}
	for _, c := range n.IPv6SecondaryAllocCIDRs {
		v.IPv6SecondaryAllocCIDRs = append(v.IPv6SecondaryAllocCIDRs, ciliumCIDRText(c))
	}
	return v
}

func ourPorts(m map[string]schema.PortConfiguration) map[string]map[string]string {
	out := make(map[string]map[string]string, len(m))
	for ip, pc := range m {
		ports := make(map[string]string, len(pc))
		for name, l4 := range pc {
			ports[name] = "null"
			if l4 != nil {
				ports[name] = fmt.Sprintf("%s:%d", l4.Protocol, l4.Port)
			}
		}
		out[ip] = ports
	}
	return out
}

func ciliumPorts(m map[string]serviceStore.PortConfiguration) map[string]map[string]string {
	out := make(map[string]map[string]string, len(m))
	for ip, pc := range m {
		ports := make(map[string]string, len(pc))
		for name, l4 := range pc {
			ports[name] = "null"
			if l4 != nil {
				ports[name] = fmt.Sprintf("%s:%d", l4.Protocol, l4.Port)
			}
		}
		out[ip] = ports
	}
	return out
}

func ourServiceView(s schema.ClusterService) serviceView {
	v := serviceView{
		Cluster: s.Cluster, Namespace: s.Namespace, Name: s.Name,
		Frontends: ourPorts(s.Frontends), Backends: ourPorts(s.Backends), Hostnames: s.Hostnames,
		Labels: s.Labels, Selector: s.Selector, IncludeExternal: s.IncludeExternal, Shared: s.Shared, ClusterID: s.ClusterID,
	}
	if len(s.Zones) > 0 {
		v.Zones = map[string]string{}
		for ip, z := range s.Zones {
			var names []string
			for _, fz := range z.ForZones {
				names = append(names, fz.Name)
			}
			v.Zones[ip] = fmt.Sprintf("%s for %v", z.Zone, names)
		}
	}
	return v
}

func ciliumServiceView(s serviceStore.ClusterService) serviceView {
	v := serviceView{
		Cluster: s.Cluster, Namespace: s.Namespace, Name: s.Name,
		Frontends: ciliumPorts(s.Frontends), Backends: ciliumPorts(s.Backends), Hostnames: s.Hostnames,
		Labels: s.Labels, Selector: s.Selector, IncludeExternal: s.IncludeExternal, Shared: s.Shared, ClusterID: s.ClusterID,
	}
	if len(s.Zones) > 0 {
		v.Zones = map[string]string{}
		for ip, z := range s.Zones {
			// What Cilium's load balancer gets (ToLBBackendZone).
			lb := z.ToLBBackendZone()
			v.Zones[ip] = fmt.Sprintf("%s for %v", lb.Zone, lb.ForZones)
		}
	}
	return v
}

func ourIPView(e schema.IPEntry) ipView {
	v := ipView{IP: ipText(e.IP), MaskBits: maskBits(e.Mask), HostIP: ipText(e.HostIP), ID: e.ID, Key: e.Key,
		Metadata: e.Metadata, K8sNamespace: e.K8sNamespace, K8sPodName: e.K8sPodName, K8sServiceAccount: e.K8sServiceAccount}
	for _, np := range e.NamedPorts {
		v.NamedPorts = append(v.NamedPorts, fmt.Sprintf("%s %s:%d", np.Name, np.Protocol, np.Port))
	}
	return v
}

func ciliumIPView(p ciliumidentity.IPIdentityPair) ipView {
	v := ipView{IP: ipText(p.IP), MaskBits: maskBits(p.Mask), HostIP: ipText(p.HostIP), ID: uint32(p.ID), Key: p.Key,
		Metadata: p.Metadata, K8sNamespace: p.K8sNamespace, K8sPodName: p.K8sPodName, K8sServiceAccount: p.K8sServiceAccount}
	for _, np := range p.NamedPorts {
		v.NamedPorts = append(v.NamedPorts, fmt.Sprintf("%s %s:%d", np.Name, np.Protocol, np.Port))
	}
	return v
}

func ourIdentityView(i schema.IdentityValue) identityView {
	v := identityView{Raw: i.Labels}
	ls, err := identity.ParseKVStoreLabels(i.Labels)
	if err != nil {
		v.Labels = []string{"unparsable: " + err.Error()}
		return v
	}
	for l := range ls.All() {
		v.Labels = append(v.Labels, l.Source+":"+l.Key+"="+l.Value)
	}
	sort.Strings(v.Labels)
	return v
}

func ciliumIdentityView(gi *key.GlobalIdentity) identityView {
	if gi == nil {
		return identityView{Raw: "<nil key>"}
	}
	v := identityView{Raw: gi.GetKey()}
	for _, l := range gi.LabelArray {
		v.Labels = append(v.Labels, l.Source+":"+l.Key+"="+l.Value)
	}
	sort.Strings(v.Labels)
	return v
}

// ourEtcdState reads cluster's state from etcd and decodes it with our own
// schema decoders (the meaning our agents give it).
func ourEtcdState(ctx context.Context, cli *kvstore.Client, p schema.Paths, cluster string) (meshState, error) {
	s := newMeshState()
	list := func(prefix string, each func(key string, value []byte) error) error {
		resp, err := cli.Etcd().Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			if err := each(string(kv.Key), kv.Value); err != nil {
				return err
			}
		}
		return nil
	}
	err := list(p.ClusterNodesPrefix(cluster), func(k string, v []byte) error {
		n, err := p.DecodeNode(k, v)
		s.Nodes[n.Name] = ourNodeView(n)
		return err
	})
	if err == nil {
		err = list(p.ClusterServicesPrefix(cluster), func(k string, v []byte) error {
			svc, err := p.DecodeClusterService(k, v)
			s.Services[svc.Namespace+"/"+svc.Name] = ourServiceView(svc)
			return err
		})
	}
	if err == nil {
		err = list(p.IPDefaultPrefix(), func(k string, v []byte) error {
			e, err := p.DecodeIPEntry(k, v)
			s.IPs[strings.TrimPrefix(k, p.IPDefaultPrefix())] = ourIPView(e)
			return err
		})
	}
	if err == nil {
		err = list(p.IdentityIDPrefix(), func(k string, v []byte) error {
			i, err := p.DecodeIdentity(k, v)
			s.Identities[i.ID] = ourIdentityView(i)
			return err
		})
	}
	return s, err
}

// diffStates returns "" when both states mean the same.
func diffStates(want, got meshState) string {
	return cmp.Diff(want, got, cmpopts.EquateEmpty())
}

// waitConverged waits until every reader holds want() and cond(want)
// holds; want is evaluated again on each try (it may read etcd).
func waitConverged(t *testing.T, what string, timeout time.Duration, readers []*ciliumReader,
	want func() (meshState, error), cond func(meshState) error,
) meshState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		w, err := want()
		if err == nil && cond != nil {
			err = cond(w)
		}
		var diffs []string
		if err == nil {
			for _, r := range readers {
				if d := diffStates(w, r.state()); d != "" {
					diffs = append(diffs, fmt.Sprintf("Cilium reader %s (-ours +Cilium's):\n%s", r.user, d))
				}
			}
			if len(diffs) == 0 {
				return w
			}
		}
		if time.Now().After(deadline) {
			for _, r := range readers {
				r.logs.RequireNoWarnings(t)
			}
			if err != nil {
				t.Fatalf("%s: our side not there within %v: %v", what, timeout, err)
			}
			t.Fatalf("%s: Cilium's view differs from ours after %v:\n%s", what, timeout, strings.Join(diffs, "\n"))
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// keysOf returns the sorted keys of m.
func keysOf[K interface{ ~string | ~uint32 }, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
