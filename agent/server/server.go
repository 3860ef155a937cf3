// Package server wires a clustermesh-agent together: the peer connections
// of the mesh configuration directory (with the claims they are validated
// against), the local cluster's watchers, the merged state, the datapath
// and its reconcilers (fed by agent/desired), the recorder of the
// datapath's flows, the WireGuard device and its key publisher, the local
// API on a unix socket (agent/localapi, agent/cniserver) and the metrics.
//
// Rules: Run owns every goroutine it starts and returns after they stopped;
// watchers write the state, only reconcilers touch the datapath.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"

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

	"github.com/clustermesh/clustermesh/agent/claims"
	"github.com/clustermesh/clustermesh/agent/cniserver"
	"github.com/clustermesh/clustermesh/agent/cnistore"
	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/flows"
	"github.com/clustermesh/clustermesh/agent/local"
	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/agent/peers"
	"github.com/clustermesh/clustermesh/agent/policywatch"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/agent/wgkey"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/httpserve"
	"github.com/clustermesh/clustermesh/internal/version/versionmetric"
	"github.com/clustermesh/clustermesh/kvstore/schema"
	"github.com/clustermesh/clustermesh/tunnel"
)

// Agent is a running clustermesh-agent.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	State    *state.State
	Datapath datapath.Datapath
	// API answers the local API's read routes (GET /v1/status, ...).
	API         *localapi.API
	cni         *cniserver.Server
	closeDP     func()
	peers       *peers.Manager
	local       *local.Watcher
	policies    *policywatch.Controller
	wireguard   *tunnel.Device
	kube        kubernetes.Interface
	stopEvents  func()
	reconcilers []statusRunner
	Registry    *prometheus.Registry

	// bpf is the eBPF datapath (nil unless --datapath=bpf); flows records
	// its flows (nil when bpf is).
	bpf   *bpf.Datapath
	flows *flows.Recorder
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
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versionmetric.Collector())
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
	// peers' recorded pod CIDRs and accepted nodes: the claims need the
	// manager's trusts, set before anything runs.
	cl := claims.New(cfg.ClusterName, st)
	a.peers = peers.New(peers.Config{
		Dir: cfg.MeshConfigDir, LocalName: cfg.ClusterName, LocalID: identity.ClusterID(cfg.ClusterID),
		MaxConnectedClusters: cfg.MaxConnectedClusters, Paths: schema.Paths{Root: cfg.KVStoreRoot},
		Sink: st.BufferedRemoteSink(), Log: log, Rejected: rejected, CacheTTL: cfg.CacheTTL, Claims: cl,
		ProbeInterval:   cfg.PeerProbeInterval,
		CacheConfigFile: cfg.ClusterMeshCacheConfig,
	})
	cl.SetTrusts(a.peers.Trusts)
	if cfg.Datapath == "bpf" {
		if err := a.loadBPF(ctx); err != nil {
			return nil, err
		}
	}
	var cniStore *cnistore.Store // nil: attachments are not kept across restarts
	if cfg.StateDir != "" {
		if cniStore, err = cnistore.Open(filepath.Join(cfg.StateDir, "attachments")); err != nil {
			return nil, fmt.Errorf("--state-dir: %w", err)
		}
	}
	if err := cniserver.Load(st, cniStore, cfg.EndpointNetNS, log); err != nil {
		return nil, err
	}
	if cfg.WireGuard {
		if err := a.openWireGuard(ctx); err != nil {
			return nil, err
		}
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
	policyRec, attachRec := a.newReconcilers()
	a.cni = cniserver.New(cniserver.Config{
		Node: cfg.NodeName, State: st, Store: cniStore, EndpointNetNS: cfg.EndpointNetNS,
		Policies: policyRec, Attachments: attachRec,
	})
	api := localapi.Config{
		Cluster: cfg.ClusterName, Node: cfg.NodeName, State: st, Peers: a.peers.Status, Reconcilers: a.reconcilerStatus,
		Ready: a.ready, PolicyProblems: a.policies.Problems, Policy: a.policies.Inspect, Metrics: a.Registry, Flows: a.flows,
	}
	a.API = localapi.New(api)
	a.Registry.MustRegister(newStatusCollector(a.peers.Status, a.reconcilerStatus))
	return a, nil
}

// ready reports whether every source delivered its initial state: the local
// cluster and every configured peer. Until then nothing is pruned from the
// datapath.
func (a *Agent) ready() bool {
	if !a.State.Initialized(append(local.Sources(), policywatch.Source, cniserver.Source)...) {
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
	// the event broadcaster); the flows recorder closes its reader of the
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
		runners["WireGuard key publisher"] = func(ctx context.Context) error {
			return wgkey.Publish(ctx, a.kube.CoreV1().Nodes(), a.cfg.NodeName, a.wireguard.PublicKey(), a.log)
		}
	}
	if a.flows != nil {
		runners["flows recorder"] = a.recordFlows
	}
	if a.cfg.HealthAddr != "" || a.cfg.MetricsAddr != "" {
		runners["health and metrics"] = func(ctx context.Context) error {
			return httpserve.Serve(ctx, a.cfg.HealthAddr, a.cfg.MetricsAddr, a.API.Readyz, a.Registry)
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

// serveAPI serves the local API (HTTP/JSON, see docs/agent-api.md), the
// read routes and the CNI plugin's, on the unix socket until ctx ends.
func (a *Agent) serveAPI(ctx context.Context) error {
	mux := http.NewServeMux()
	a.API.Register(mux)
	a.cni.Register(mux)
	return localapi.Serve(ctx, a.cfg.APISocket, mux)
}
