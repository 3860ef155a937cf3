package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/allocator"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/export"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/kvstoremesh"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/k8sconv"
	"github.com/clustermesh/clustermesh/internal/version"
	"github.com/clustermesh/clustermesh/internal/version/versionmetric"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/etcdserver"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Server is a running clustermesh-apiserver.
type Server struct {
	cfg      Config
	log      *slog.Logger
	layout   identity.Layout
	paths    schema.Paths
	registry *prometheus.Registry

	etcdServer *etcdserver.Server
	etcd       *kvstore.Client
	kube       kubernetes.Interface
	rc         rest.Interface
	factory    informers.SharedInformerFactory
	identities cache.SharedIndexInformer
	exporter   *export.Exporter
	cache      *kvstoremesh.Cache // nil when off
	events     record.EventBroadcaster

	cachesSynced chan struct{} // closed once the informers are synced

	allocMu sync.Mutex           // guards alloc
	alloc   *allocator.Allocator // of the current leadership term, or nil
}

// Run starts a clustermesh-apiserver and serves until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Run(ctx)
}

// New validates cfg and connects to etcd and Kubernetes.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log.With("cluster", cfg.ClusterName), paths: schema.Paths{Root: cfg.KVStoreRoot},
		registry: prometheus.NewRegistry(), cachesSynced: make(chan struct{})}
	s.registry.MustRegister(versionmetric.Collector())
	s.log.Info("starting", "version", version.Get().String())
	s.layout, _ = identity.NewLayout(cfg.MaxConnectedClusters)
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.connectEtcd(ctx); err != nil {
		return nil, err
	}
	if err := s.connectKube(); err != nil {
		return nil, err
	}
	if cfg.Cache {
		if s.cache, err = kvstoremesh.New(kvstoremesh.Config{
			Local: s.etcd, Paths: s.paths, LocalName: cfg.ClusterName, LocalID: identity.ClusterID(cfg.ClusterID),
			MaxConnectedClusters: cfg.MaxConnectedClusters, MeshConfigDir: cfg.MeshConfigDir, CacheTTL: cfg.CacheTTL,
			ProbeInterval: cfg.PeerProbeInterval,
			Log:           s.log, Registerer: s.registry, LocalNodes: s.localNodes(),
		}); err != nil {
			return nil, fmt.Errorf("cache of remote state (--cache): %w", err)
		}
	}
	return s, nil
}

func (s *Server) connectEtcd(ctx context.Context) error {
	cfg := s.cfg
	if cfg.EtcdConfig != "" {
		cc, err := kvstore.LoadClientConfig(cfg.EtcdConfig)
		if err != nil {
			return fmt.Errorf("--etcd-config: %w", err)
		}
		if s.etcd, err = kvstore.Connect(ctx, cc); err != nil {
			return fmt.Errorf("connect to external etcd: %w", err)
		}
		s.log.Info("connected to external etcd", "endpoints", cc.Endpoints)
		return nil
	}
	srv, err := etcdserver.StartServer(ctx, etcdserver.ServerConfig{
		DataDir: cfg.EtcdDataDir, ListenClientURLs: cfg.EtcdListenClientURLs,
		CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, TrustedCAFile: cfg.TLSCAFile, Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.etcdServer = srv
	cc := kvstore.ClientConfig{Endpoints: srv.ClientURLs()[:1], RateLimitQPS: -1}
	if cfg.TLSCertFile != "" {
		cc.TrustedCAFile, cc.CertFile, cc.KeyFile = cfg.TLSCAFile, cfg.AdminCertFile, cfg.AdminKeyFile
	}
	if s.etcd, err = kvstore.Connect(ctx, cc); err != nil {
		return fmt.Errorf("connect to the embedded etcd: %w", err)
	}
	if cfg.TLSCertFile != "" {
		if err := kvstore.BootstrapAuth(ctx, s.etcd.Etcd(), s.paths, cfg.ClusterName); err != nil {
			return fmt.Errorf("set up etcd users and roles (is --admin-cert-file's common name %q?): %w", kvstore.AdminUser, err)
		}
	} else {
		s.log.Warn("embedded etcd serves plain http without authentication: for development only; set --tls-* to serve peers")
	}
	s.log.Info("embedded etcd started", "urls", srv.ClientURLs(), "data-dir", cfg.EtcdDataDir)
	return nil
}

func (s *Server) connectKube() error {
	rc := s.cfg.RestConfig
	if rc == nil {
		var err error
		if s.cfg.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", s.cfg.Kubeconfig)
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return fmt.Errorf("kubernetes client config (--kubeconfig %q): %w", s.cfg.Kubeconfig, err)
		}
	}
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "clustermesh-apiserver"
	var err error
	if s.kube, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if s.rc, err = cmv1.NewRESTClient(rc); err != nil {
		return err
	}
	s.factory = informers.NewSharedInformerFactory(s.kube, 0)
	s.identities = cmv1.NewIdentityInformer(s.rc, 0)
	s.events = record.NewBroadcaster()
	s.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.kube.CoreV1().Events("")})
	recorder := s.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "clustermesh-apiserver"})

	cid := identity.ClusterID(s.cfg.ClusterID)
	s.exporter, err = export.New(export.Config{
		Cluster: s.cfg.ClusterName, ClusterID: cid, Layout: s.layout, Paths: s.paths,
		DefaultGlobalNamespace: s.cfg.DefaultGlobalNamespace, Recorder: recorder,
		Metrics: export.NewMetrics(s.registry), Log: s.log,
	}, s.etcd, export.Sources{Factory: s.factory, Identities: s.identities})
	if err != nil {
		return err
	}
	return s.addAllocatorHandlers()
}

// CachesSynced is closed once the Kubernetes informers are synced.
func (s *Server) CachesSynced() <-chan struct{} { return s.cachesSynced }

// localNodes returns the local cluster's nodes as exported, from the node
// informer (which the export starts), for the cache's checks of peers.
func (s *Server) localNodes() func() []schema.Node {
	lister := s.factory.Core().V1().Nodes().Lister()
	return func() []schema.Node {
		nodes, err := lister.List(labels.Everything())
		if err != nil {
			return nil
		}
		out := make([]schema.Node, 0, len(nodes))
		for _, n := range nodes {
			sn, _ := k8sconv.NodeToSchema(s.cfg.ClusterName, s.cfg.ClusterID, n) // problems are the export's to report
			out = append(out, sn)
		}
		return out
	}
}

// Cache returns the cache of remote state, nil when off.
func (s *Server) Cache() *kvstoremesh.Cache { return s.cache }

// Exporter returns the export (tests read its status).
func (s *Server) Exporter() *export.Exporter { return s.exporter }

// EtcdClientURLs returns the embedded etcd's URLs (nil with an external one).
func (s *Server) EtcdClientURLs() []string {
	if s.etcdServer == nil {
		return nil
	}
	return s.etcdServer.ClientURLs()
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Teardown order matters: stop everything, wait for it, then the
	// informers (whose Shutdown waits for ctx to be done).
	defer func() {
		cancel()
		wg.Wait()
		s.factory.Shutdown()
		s.exporter.ShutDown() // no handler queues a key after the informers stopped
	}()
	s.factory.Start(ctx.Done())
	wg.Go(func() { s.identities.Run(ctx.Done()) })
	errs := make(chan error, 8)
	goRun := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	goRun("http", s.serveHTTP)

	synced := append(s.factorySynced(), s.identities.HasSynced)
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	s.log.Info("kubernetes caches synced")
	close(s.cachesSynced)
	cc := schema.ClusterConfig{ID: s.cfg.ClusterID, Capabilities: schema.ClusterConfigCapabilities{
		SyncedCanaries: true, MaxConnectedClusters: s.cfg.MaxConnectedClusters}}
	goRun("cluster config", func(ctx context.Context) error {
		return kvstore.RunClusterConfig(ctx, s.etcd, s.paths, s.cfg.ClusterName, cc, s.log, nil)
	})
	goRun("heartbeat", func(ctx context.Context) error {
		return kvstore.RunHeartbeat(ctx, s.etcd, s.paths, s.cfg.HeartbeatInterval, nil, s.log)
	})
	goRun("export", s.exporter.Run)
	if s.cache != nil {
		s.log.Info("caching the peers of the mesh configuration for the local agents", "mesh-config-dir", s.cfg.MeshConfigDir)
		goRun("cache of remote state", s.cache.Run)
	}
	goRun("identity allocation", s.runAllocator)
	if s.etcdServer != nil {
		goRun("embedded etcd", func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-s.etcdServer.Err():
				return fmt.Errorf("embedded etcd failed: %w", err)
			}
		})
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-errs:
		return err
	}
}

func (s *Server) factorySynced() []cache.InformerSynced {
	core := s.factory.Core().V1()
	return []cache.InformerSynced{
		core.Nodes().Informer().HasSynced, core.Pods().Informer().HasSynced, core.Namespaces().Informer().HasSynced,
		core.Services().Informer().HasSynced, s.factory.Discovery().V1().EndpointSlices().Informer().HasSynced,
	}
}

// Close releases the connections and stops the embedded etcd.
func (s *Server) Close() {
	if s.events != nil {
		s.events.Shutdown()
	}
	if s.etcd != nil {
		_ = s.etcd.Close()
	}
	if s.etcdServer != nil {
		s.etcdServer.Close()
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return fmt.Sprintf("clustermesh-apiserver-%d", time.Now().UnixNano())
	}
	return h
}
