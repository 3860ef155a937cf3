// Package export keeps a cluster's etcd equal to what peers need: nodes,
// identities, one ip entry per pod IP, and the global services, in the
// schema of kvstore/schema, each prefix with its synced marker.
//
// Rules: every kind is a level-based controller reading informer caches and
// writing desired state into a kvstore.SyncStore; a prefix is declared
// synced only after each object of the initial list was reconciled once;
// bad input on one object (an invalid annotation, a running pod without IP,
// a malformed identity) produces an Event, a metric and a log line naming the
// object and the fix, and the rest of the export goes on.
package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/controller"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Config of an Exporter.
type Config struct {
	Cluster   string
	ClusterID identity.ClusterID
	Layout    identity.Layout
	Paths     schema.Paths
	// DefaultGlobalNamespace: services of a namespace without the
	// clustermesh.cilium.io/global annotation may be exported.
	DefaultGlobalNamespace bool
	Recorder               record.EventRecorder
	Metrics                *Metrics
	Log                    *slog.Logger
	// Store tunes the SyncStores (Prefix and SyncedKey are set here).
	Store kvstore.SyncStoreConfig
}

// Exporter exports a cluster into its etcd.
type Exporter struct {
	cfg   Config
	kinds []*kind

	factory    informers.SharedInformerFactory
	identities cache.SharedIndexInformer

	nodes, ids, pods, services *kind

	mu sync.Mutex // guards podIPs, ipOwner, podLabels, byLabels, reported
	// podIPs: pod key → ip keys exported for it; ipOwner: ip key → pod key.
	podIPs  map[string][]string
	ipOwner map[string]string
	// podLabels: pod key → labels key; byLabels: labels key → pods.
	podLabels map[string]string
	byLabels  map[string]map[string]struct{}
	reported  map[string]string // object key → last problem reported
}

// kind is one exported prefix: its store and controller.
type kind struct {
	name  string
	store *kvstore.SyncStore
	ctrl  *controller.Controller
	keys  func() ([]string, error)
}

// Sources are the informers the exporter reads.
type Sources struct {
	Factory    informers.SharedInformerFactory
	Identities cache.SharedIndexInformer
}

// New wires an exporter to its informers and etcd client.
func New(cfg Config, cli *kvstore.Client, src Sources) (*Exporter, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	e := &Exporter{
		cfg: cfg, factory: src.Factory, identities: src.Identities,
		podIPs: map[string][]string{}, ipOwner: map[string]string{},
		podLabels: map[string]string{}, byLabels: map[string]map[string]struct{}{}, reported: map[string]string{},
	}
	p := cfg.Paths
	var err error
	mk := func(name, prefix, synced string, rec controller.Reconcile, keys func() ([]string, error)) *kind {
		if err != nil {
			return nil
		}
		sc := cfg.Store
		sc.Prefix, sc.SyncedKey = prefix, p.Synced(cfg.Cluster, synced)
		sc.Logger = cfg.Log
		var st *kvstore.SyncStore
		if st, err = kvstore.NewSyncStore(cli, sc); err != nil {
			return nil
		}
		k := &kind{name: name, store: st, ctrl: controller.New("export-"+name, rec, cfg.Log), keys: keys}
		e.kinds = append(e.kinds, k)
		return k
	}
	f := src.Factory
	e.nodes = mk("nodes", p.ClusterNodesPrefix(cfg.Cluster), p.NodesPrefix(), e.reconcileNode, func() ([]string, error) {
		return keysOf(f.Core().V1().Nodes().Lister().List(labels.Everything()))
	})
	e.ids = mk("identities", p.IdentityIDPrefix(), p.IdentitiesPrefix(), e.reconcileIdentity, func() ([]string, error) {
		return src.Identities.GetIndexer().ListKeys(), nil
	})
	e.pods = mk("ip", p.IPDefaultPrefix(), p.IPPrefix(), e.reconcilePod, func() ([]string, error) {
		return keysOf(f.Core().V1().Pods().Lister().List(labels.Everything()))
	})
	e.services = mk("services", p.ClusterServicesPrefix(cfg.Cluster), p.ServicesPrefix(), e.reconcileService, func() ([]string, error) {
		return keysOf(f.Core().V1().Services().Lister().List(labels.Everything()))
	})
	if err != nil {
		return nil, fmt.Errorf("exporter stores: %w", err)
	}
	if err := e.addHandlers(); err != nil {
		return nil, err
	}
	return e, nil
}

func keysOf[T runtime.Object](objs []T, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		k, err := cache.MetaNamespaceKeyFunc(o)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Run exports until ctx ends. The informers must be started and synced.
func (e *Exporter) Run(ctx context.Context) error {
	defer e.ShutDown() // last: the controllers not Run yet (a list failed) too
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(e.kinds))
	for _, k := range e.kinds {
		keys, err := k.keys()
		if err != nil {
			return fmt.Errorf("list %s: %w", k.name, err)
		}
		wg.Go(func() {
			if err := k.store.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s store: %w", k.name, err)
			}
		})
		wg.Go(func() { k.ctrl.Run(ctx, 4) })
		k.ctrl.SetInitial(keys)
		wg.Go(func() {
			select {
			case <-ctx.Done():
			case <-k.ctrl.Synced():
				e.cfg.Log.Info("initial export reconciled", "kind", k.name, "objects", len(keys))
				k.store.Synced()
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

// ShutDown stops the exporter's queues, into which the informers' handlers
// queue keys from New on: Run does when it returns; the owner of an
// exporter whose Run was never called does, once its informers stopped.
func (e *Exporter) ShutDown() {
	for _, k := range e.kinds {
		k.ctrl.ShutDown()
	}
}

// Status reports each kind's store status.
func (e *Exporter) Status() map[string]kvstore.SyncStoreStatus {
	out := make(map[string]kvstore.SyncStoreStatus, len(e.kinds))
	for _, k := range e.kinds {
		out[k.name] = k.store.Status()
	}
	return out
}

// Synced reports whether every prefix's marker is written.
func (e *Exporter) Synced() bool {
	for _, k := range e.kinds {
		if !k.store.Status().Synced {
			return false
		}
	}
	return true
}

// report records a problem with an object once per distinct message: an
// Event on the object, a metric and a log line.
func (e *Exporter) report(obj runtime.Object, key, kindName, reason, msg string) {
	e.mu.Lock()
	dup := e.reported[kindName+"/"+key] == reason+msg
	e.reported[kindName+"/"+key] = reason + msg
	e.mu.Unlock()
	if dup {
		return
	}
	e.cfg.Metrics.Invalid.WithLabelValues(kindName, reason).Inc()
	e.cfg.Log.Warn("not exported as is", "kind", kindName, "object", key, "reason", reason, "problem", msg)
	if obj != nil {
		e.cfg.Recorder.Event(obj, corev1.EventTypeWarning, reason, msg)
	}
}

// clearReport forgets the problems of an object that is fine again.
func (e *Exporter) clearReport(kindName, key string) {
	e.mu.Lock()
	delete(e.reported, kindName+"/"+key)
	e.mu.Unlock()
}
