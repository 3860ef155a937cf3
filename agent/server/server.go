// Package server wires a clustermesh-agent together: the peer connections
// of the mesh configuration directory, the merged state, the datapath
// reconcilers, the recorder of the datapath's drops and the local API on a
// unix socket.
//
// Rules: Run owns every goroutine it starts and returns after they stopped;
// watchers write the state, only reconcilers touch the datapath.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/clustermesh/clustermesh/agent/cnistore"
	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/bpfdp"
	"github.com/clustermesh/clustermesh/agent/drops"
	"github.com/clustermesh/clustermesh/agent/local"
	"github.com/clustermesh/clustermesh/agent/peers"
	"github.com/clustermesh/clustermesh/agent/policywatch"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/state"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/httpserve"
	"github.com/clustermesh/clustermesh/kvstore/schema"
	"github.com/clustermesh/clustermesh/tunnel"
)

// Config of a clustermesh-agent.
type Config struct {
	NodeName             string // --node-name
	ClusterName          string // --cluster-name
	ClusterID            uint32 // --cluster-id
	MaxConnectedClusters uint32 // --max-connected-clusters
	MeshConfigDir        string // --mesh-config-dir
	Datapath             string // --datapath: "bpf" or "none" (in memory)
	BPFPinDir            string // --bpf-pin-dir (bpffs directory of the pinned maps and links)
	APISocket            string // --api-socket
	KVStoreRoot          string // --kvstore-root
	Kubeconfig           string // --kubeconfig (in-cluster config when empty)
	// RestConfig, when set (tests), is used instead of Kubeconfig.
	RestConfig *rest.Config
	// PolicyAllClusters: peer selectors without a cluster requirement
	// select every cluster (--policy-default-local-cluster=false).
	PolicyAllClusters bool
	HealthAddr        string // --health-addr (/healthz, /readyz over TCP; "": none)
	MetricsAddr       string // --metrics-addr (/metrics over TCP; "": only on the API socket)
	// NoEvents: do not record Kubernetes Events (tests of many agents).
	NoEvents bool
	// WireGuard routes and encrypts traffic to every other node
	// (--enable-wireguard); its key is WireGuardKeyFile, its device
	// WireGuardDevice listening on WireGuardPort; WireGuardNetNS (tests)
	// puts the device in another network namespace.
	WireGuard        bool
	WireGuardKeyFile string
	WireGuardDevice  string
	WireGuardPort    int
	WireGuardNetNS   string
	// BPFIPCacheMaxEntries and BPFPolicyMaxEntries size the ipcache and
	// the policy map (--bpf-ipcache-max-entries, --bpf-policy-max-entries;
	// 0: bpf.Options' defaults, 512k and 256k).
	BPFIPCacheMaxEntries uint32
	BPFPolicyMaxEntries  uint32
	// TCAttach is how the tc programs are attached to pods' interfaces
	// (--tc-attach): "" (TCX, clsact where the kernel has none), "tcx" or
	// "clsact".
	TCAttach string
	// StateDir keeps what the agent must not lose across restarts: the
	// endpoints the CNI plugin reported (--state-dir).
	StateDir string
	// EndpointNetNS (tests) is the network namespace of the endpoints'
	// host-side interfaces, when it is not the agent's.
	EndpointNetNS string
	// CgroupRoot is the cgroup v2 directory where the socket
	// load-balancing programs are attached (--cgroup-root; "auto": the
	// cgroup2 mount; "": none, services are not load-balanced).
	CgroupRoot string
	// CacheTTL revokes a peer's state when its heartbeat has not changed
	// for this long (--clustermesh-cache-ttl; 0: keep it).
	CacheTTL time.Duration
	// DropsCapacity is how many of the datapath's most recent drops
	// GET /v1/drops keeps (--drops-capacity; 0: drops.DefaultCapacity).
	// Drops are recorded only with --datapath=bpf.
	DropsCapacity int
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name: required (the Kubernetes node this agent runs on)"))
	}
	if err := identity.ValidateClusterName(c.ClusterName); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-name: %w", err))
	}
	if c.MaxConnectedClusters == 0 {
		c.MaxConnectedClusters = 255
	}
	if layout, err := identity.NewLayout(c.MaxConnectedClusters); err != nil {
		errs = append(errs, fmt.Errorf("--max-connected-clusters: %w", err))
	} else if err := layout.ValidateClusterID(identity.ClusterID(c.ClusterID)); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-id: %w", err))
	}
	if c.MeshConfigDir == "" {
		errs = append(errs, errors.New("--mesh-config-dir: required (the directory of peer etcd configs, one file per peer)"))
	}
	switch c.Datapath {
	case "", "none":
		c.Datapath = "none"
	case "bpf":
		if c.BPFPinDir == "" {
			c.BPFPinDir = "/sys/fs/bpf/clustermesh"
		}
		if c.CgroupRoot == "auto" {
			root, err := cgroup2Root()
			if err != nil {
				errs = append(errs, fmt.Errorf("--cgroup-root auto: %w", err))
			}
			c.CgroupRoot = root
		}
	default:
		errs = append(errs, fmt.Errorf("--datapath %q: use \"bpf\" (eBPF maps and programs) or \"none\" (in memory, for tests)", c.Datapath))
	}
	if c.APISocket == "" {
		errs = append(errs, errors.New("--api-socket: required (e.g. /var/run/clustermesh/agent.sock)"))
	}
	if c.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("--clustermesh-cache-ttl %v: must be 0 (keep the last state) or positive", c.CacheTTL))
	}
	switch {
	case c.DropsCapacity == 0:
		c.DropsCapacity = drops.DefaultCapacity
	case c.DropsCapacity < 0:
		errs = append(errs, fmt.Errorf("--drops-capacity %d: must be positive (the number of recent drops kept, default %d)", c.DropsCapacity, drops.DefaultCapacity))
	}
	if c.KVStoreRoot == "" {
		c.KVStoreRoot = "cilium"
	}
	if c.WireGuard && c.WireGuardKeyFile == "" {
		c.WireGuardKeyFile = "/var/lib/clustermesh-state/wireguard.key"
	}
	if c.WireGuardPort < 0 || c.WireGuardPort > 65535 {
		errs = append(errs, fmt.Errorf("--wireguard-port %d: must be a UDP port (1-65535), the same on every node of the mesh", c.WireGuardPort))
	}
	return errors.Join(errs...)
}

// Agent is a running clustermesh-agent.
type Agent struct {
	cfg         Config
	log         *slog.Logger
	State       *state.State
	Datapath    datapath.Datapath
	closeDP     func()
	peers       *peers.Manager
	local       *local.Watcher
	policies    *policywatch.Controller
	wireguard   *tunnel.Device
	kube        kubernetes.Interface
	stopEvents  func()
	reconcilers []statusRunner
	// The policies and attachments reconcilers, which keep each object's
	// status: the CNI ADD waits on them.
	policyRec *reconciler.Reconciler[uint16, datapath.EndpointPolicy]
	attachRec *reconciler.Reconciler[string, datapath.Attachment]
	Registry  *prometheus.Registry

	// bpf is the eBPF datapath (nil unless --datapath=bpf); drops records
	// its drops (nil when bpf is).
	bpf   *bpf.Datapath
	drops *drops.Recorder

	cniMu    sync.Mutex      // serializes changes of attachments
	cniStore *cnistore.Store // nil: attachments are not kept across restarts
}

// statusRunner is a reconciler of any table.
type statusRunner interface {
	Run(ctx context.Context) error
	Status() reconciler.Status
}

// New validates cfg and builds the agent. With --datapath=bpf it loads the
// eBPF datapath (reopening what a previous run pinned); Run closes it
// (keeping the pins).
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *Agent, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("cluster", cfg.ClusterName, "node", cfg.NodeName)
	st, err := state.New(log)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, State: st, Datapath: datapath.NewMemory(), closeDP: func() {}, Registry: prometheus.NewRegistry()}
	// The agent's own cost: CPU, memory, allocations, goroutines.
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() { // a failing New leaks nothing it started or loaded
		if err != nil {
			if a.stopEvents != nil {
				a.stopEvents()
			}
			a.closeDP()
		}
	}()
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clustermesh_agent_remote_rejected_total",
		Help: "Entries from peer clusters rejected by validation, by cluster, kind and reason.",
	}, []string{"cluster", "kind", "reason"})
	a.Registry.MustRegister(rejected)
	// A peer is checked against the local cluster's nodes and the other
	// peers' recorded pod CIDRs and accepted nodes: claims needs the
	// manager's trusts, set before anything runs.
	claims := newClaims(cfg.ClusterName, st)
	a.peers = peers.New(peers.Config{
		Dir: cfg.MeshConfigDir, LocalName: cfg.ClusterName, LocalID: identity.ClusterID(cfg.ClusterID),
		MaxConnectedClusters: cfg.MaxConnectedClusters, Paths: schema.Paths{Root: cfg.KVStoreRoot},
		Sink: st.BufferedRemoteSink(), Log: log, Rejected: rejected, CacheTTL: cfg.CacheTTL, Claims: claims,
	})
	claims.trusts = a.peers.Trusts
	if cfg.Datapath == "bpf" {
		dp, dpErr := bpfdp.New(ctx, bpf.Options{PinDir: cfg.BPFPinDir, TCAttach: cfg.TCAttach,
			IPCacheMaxEntries: cfg.BPFIPCacheMaxEntries, PolicyMaxEntries: cfg.BPFPolicyMaxEntries}, cfg.EndpointNetNS)
		if dpErr != nil {
			return nil, fmt.Errorf("--datapath=bpf: load the eBPF datapath (pinned under --bpf-pin-dir %s): %w", cfg.BPFPinDir, dpErr)
		}
		a.Datapath, a.closeDP = dp, func() { _ = dp.Close() }
		a.bpf = dp.BPF()
		a.drops = drops.NewRecorder(drops.Config{Capacity: cfg.DropsCapacity, ClusterOf: a.clusterOf, Log: log})
		if cfg.CgroupRoot != "" {
			if err := dp.BPF().AttachCgroup(cfg.CgroupRoot); err != nil {
				return nil, fmt.Errorf("--cgroup-root %s: attach the socket load-balancing programs: %w", cfg.CgroupRoot, err)
			}
		}
	}
	if cfg.StateDir != "" {
		if a.cniStore, err = cnistore.Open(filepath.Join(cfg.StateDir, "attachments")); err != nil {
			return nil, fmt.Errorf("--state-dir: %w", err)
		}
	}
	if err := a.loadAttachments(); err != nil {
		return nil, err
	}
	if cfg.WireGuard {
		dev, wgErr := tunnel.New(ctx, tunnel.Config{Name: cfg.WireGuardDevice, KeyFile: cfg.WireGuardKeyFile,
			ListenPort: cfg.WireGuardPort, NetNSPath: cfg.WireGuardNetNS, Logger: log})
		if wgErr != nil {
			return nil, fmt.Errorf("--enable-wireguard: %w", wgErr)
		}
		closeDP := a.closeDP
		a.Datapath, a.wireguard = withPeers{Datapath: a.Datapath, peers: dev.Peers()}, dev
		a.closeDP = func() { _ = dev.Close(); closeDP() }
	}
	rc := cfg.RestConfig
	if rc == nil {
		if cfg.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return nil, fmt.Errorf("kubernetes client config (--kubeconfig %q): %w", cfg.Kubeconfig, err)
		}
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	a.kube = kube
	idc, err := cmv1.NewRESTClient(rc)
	if err != nil {
		return nil, fmt.Errorf("identity client: %w", err)
	}
	a.local, err = local.New(local.Config{
		Cluster: cfg.ClusterName, ClusterID: cfg.ClusterID, NodeName: cfg.NodeName,
		Kube: kube, Identities: idc, State: st, Log: log,
	})
	if err != nil {
		return nil, err
	}
	var events policywatch.EventRecorder
	if !cfg.NoEvents {
		bc := record.NewBroadcaster()
		bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
		a.stopEvents = bc.Shutdown
		scheme := runtime.NewScheme()
		if err := errors.Join(clientgoscheme.AddToScheme(scheme), cmv1.AddToScheme(scheme)); err != nil {
			return nil, fmt.Errorf("event scheme: %w", err)
		}
		events = bc.NewRecorder(scheme, corev1.EventSource{Component: "clustermesh-agent", Host: cfg.NodeName})
	}
	a.policies, err = policywatch.New(policywatch.Config{
		Cluster: cfg.ClusterName, DefaultLocalCluster: !cfg.PolicyAllClusters, Kube: kube, Policies: idc, State: st,
		WaitFor: []string{local.SourceIdentities, local.SourcePods}, Events: events, Log: log,
	})
	if err != nil {
		return nil, err
	}
	a.policyRec = reconciler.New(reconciler.Config[uint16, datapath.EndpointPolicy]{
		Name: "policies", Table: a.Datapath.Policies(), Initialized: a.ready, Log: log, TrackObjects: true,
		Changed: st.WatchTables(state.TablePolicies, state.TableInitialized).Changed,
		Desired: func() map[uint16]datapath.EndpointPolicy { return desiredPolicies(st.Snapshot()) },
	})
	a.attachRec = reconciler.New(reconciler.Config[string, datapath.Attachment]{
		Name: "attachments", Table: a.Datapath.Attachments(), Initialized: a.ready, Log: log, TrackObjects: true,
		Changed: st.WatchTables(state.TableAttachments, state.TablePolicies, state.TableInitialized).Changed,
		Desired: func() map[string]datapath.Attachment { return desiredAttachments(st.Snapshot()) },
	})
	a.reconcilers = []statusRunner{
		a.policyRec,
		a.attachRec,
		reconciler.New(reconciler.Config[netip.Prefix, datapath.IPCacheEntry]{
			Name: "ipcache", Table: a.Datapath.IPCache(), Initialized: a.ready, Log: log, Capacity: a.ipcacheCapacity(),
			Incremental: newIPCacheSource(st, cfg.ClusterName, cfg.NodeName),
		}),
		reconciler.New(reconciler.Config[string, datapath.Peer]{
			Name: "peers", Table: a.Datapath.Peers(), Initialized: a.ready, Log: log,
			Changed: st.WatchTables(state.TableNodes, state.TableInitialized).Changed,
			Desired: func() map[string]datapath.Peer { return desiredPeers(st.Snapshot(), cfg.ClusterName, cfg.NodeName) },
		}),
		reconciler.New(reconciler.Config[datapath.ServiceKey, datapath.Service]{
			Name: "services", Table: a.Datapath.Services(), Initialized: a.ready, Log: log,
			Changed: st.WatchTables(state.TableLocalServices, state.TableServices, state.TableNodes, state.TableInitialized).Changed,
			Desired: func() map[datapath.ServiceKey]datapath.Service {
				return desiredServices(st.Snapshot(), cfg.ClusterName)
			},
		}),
	}
	a.Registry.MustRegister(newStatusCollector(a.peers.Status, a.reconcilerStatus))
	return a, nil
}

// ipcacheCapacity is the size of the kernel's ipcache (0: unbounded, the
// in-memory datapath).
func (a *Agent) ipcacheCapacity() int {
	if a.bpf == nil {
		return 0
	}
	return a.bpf.IPCache().Capacity()
}

// ready reports whether every source delivered its initial state: the local
// cluster and every configured peer. Until then nothing is pruned from the
// datapath.
func (a *Agent) ready() bool {
	if !a.State.Initialized(append(local.Sources(), policywatch.Source, sourceCNI)...) {
		return false
	}
	for _, st := range a.peers.Status() {
		if !st.Ready {
			return false
		}
	}
	return true
}

// Run serves until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Stop every component before closing what they use (the datapath,
	// the event broadcaster); the drops recorder closes its reader of the
	// datapath's events on its way out, before the datapath.
	defer func() {
		cancel()
		wg.Wait()
		if a.stopEvents != nil {
			a.stopEvents()
		}
		a.closeDP()
	}()
	runners := map[string]func(context.Context) error{
		"peers": a.peers.Run, "local cluster": a.local.Run, "local API": a.serveAPI, "policy": a.policies.Run,
	}
	for _, r := range a.reconcilers {
		runners[r.Status().Name+" reconciler"] = r.Run
	}
	if a.wireguard != nil {
		runners["WireGuard key publisher"] = a.publishWireGuardKey
	}
	if a.drops != nil {
		runners["drops recorder"] = a.recordDrops
	}
	if a.cfg.HealthAddr != "" || a.cfg.MetricsAddr != "" {
		runners["health and metrics"] = func(ctx context.Context) error {
			return httpserve.Serve(ctx, a.cfg.HealthAddr, a.cfg.MetricsAddr, a.readyz, a.Registry)
		}
	}
	errs := make(chan error, len(runners))
	for name, f := range runners {
		wg.Go(func() {
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	a.log.Info("clustermesh-agent started", "mesh-config-dir", a.cfg.MeshConfigDir, "api-socket", a.cfg.APISocket, "datapath", a.cfg.Datapath)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-errs:
		return err
	}
}
