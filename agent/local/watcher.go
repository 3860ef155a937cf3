// Package local reads the agent's own cluster from its Kubernetes API with
// client-go informers and writes it into the state tables under the local
// cluster's name: the identities the clustermesh-apiserver allocated, every
// pod IP with its identity, the pods of this node (endpoints), nodes, and
// Services with their EndpointSlices.
//
// Rules: informer handlers only queue keys; one controller per kind
// reconciles a key from the informer caches (level-based) and writes the
// state in one transaction; each kind marks its source initialized once
// every object of its initial list was written. A pod whose identity is not
// known yet gets the reserved init identity and is written again when the
// identity appears.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/clustermesh/clustermesh/agent/state"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/internal/controller"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Sources the watcher marks initialized in the state.
const (
	SourceIdentities = "local/identities"
	SourcePods       = "local/pods"
	SourceNodes      = "local/nodes"
	SourceServices   = "local/services"
)

// Sources lists every source the watcher initializes.
func Sources() []string {
	return []string{SourceIdentities, SourcePods, SourceNodes, SourceServices}
}

// Config of a Watcher.
type Config struct {
	Cluster   string
	ClusterID uint32
	// NodeName is this node: its pods become endpoints.
	NodeName string
	Kube     kubernetes.Interface
	// Identities is a REST client of the clustermesh.io API group
	// (cmv1.NewRESTClient).
	Identities rest.Interface
	State      *state.State
	Log        *slog.Logger
}

// Watcher writes the local cluster into the state.
type Watcher struct {
	cfg        Config
	log        *slog.Logger
	factory    informers.SharedInformerFactory
	identities cache.SharedIndexInformer

	idCtl, podCtl, nodeCtl, svcCtl *controller.Controller

	mu        sync.Mutex                     // guards the maps below
	podIPs    map[string][]netip.Prefix      // pod key → the ip entries written for it
	ipOwner   map[netip.Prefix]string        // ip entry → the pod key that wrote it
	podLabels map[string]string              // pod key → its labels key
	byLabels  map[string]map[string]struct{} // labels key → pod keys
	idLabels  map[string]string              // identity name → its labels key
	// Named container ports of every pod, for egress rules to a named port.
	podNamed   map[string][]schema.NamedPort
	namedCount map[schema.NamedPort]int
}

// New returns a watcher; nothing happens before Run.
func New(cfg Config) (*Watcher, error) {
	if cfg.Kube == nil || cfg.Identities == nil || cfg.State == nil {
		return nil, errors.New("local watcher: Kube, Identities and State are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		cfg: cfg, log: cfg.Log.With("source", "local"),
		factory:    informers.NewSharedInformerFactory(cfg.Kube, 0),
		identities: cmv1.NewIdentityInformer(cfg.Identities, 0),
		podIPs:     map[string][]netip.Prefix{}, ipOwner: map[netip.Prefix]string{},
		podLabels: map[string]string{}, byLabels: map[string]map[string]struct{}{}, idLabels: map[string]string{},
		podNamed: map[string][]schema.NamedPort{}, namedCount: map[schema.NamedPort]int{},
	}
	w.idCtl = controller.New("local-identities", w.reconcileIdentity, w.log)
	w.podCtl = controller.New("local-pods", w.reconcilePod, w.log)
	w.nodeCtl = controller.New("local-nodes", w.reconcileNode, w.log)
	w.svcCtl = controller.New("local-services", w.reconcileService, w.log)
	return w, nil
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	f := w.factory
	pods, nss := f.Core().V1().Pods().Informer(), f.Core().V1().Namespaces().Informer()
	nodes, svcs := f.Core().V1().Nodes().Informer(), f.Core().V1().Services().Informer()
	slices := f.Discovery().V1().EndpointSlices().Informer()
	for _, reg := range []struct {
		inf cache.SharedIndexInformer
		fn  func(key string, obj any)
	}{
		{pods, func(k string, _ any) { w.podCtl.Enqueue(k) }},
		{nss, func(k string, _ any) { w.enqueueNamespace(k) }},
		{nodes, func(k string, _ any) { w.nodeCtl.Enqueue(k) }},
		{svcs, func(k string, _ any) { w.svcCtl.Enqueue(k) }},
		{slices, func(_ string, obj any) { w.enqueueSliceService(obj) }},
		{w.identities, func(k string, _ any) { w.idCtl.Enqueue(k) }},
	} {
		if _, err := reg.inf.AddEventHandler(onChange(reg.fn)); err != nil {
			return fmt.Errorf("add event handler: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		f.Shutdown() // no handler queues a key after this
		for _, c := range []*controller.Controller{w.idCtl, w.podCtl, w.nodeCtl, w.svcCtl} {
			c.ShutDown() // those never Run (the caches did not sync) too
		}
	}()
	f.Start(ctx.Done())
	wg.Go(func() { w.identities.Run(ctx.Done()) })
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced, nss.HasSynced, nodes.HasSynced, svcs.HasSynced, slices.HasSynced, w.identities.HasSynced) {
		return fmt.Errorf("wait for the local Kubernetes caches: %w", ctx.Err())
	}
	for _, c := range []struct {
		ctl    *controller.Controller
		inf    cache.SharedIndexInformer
		source string
	}{
		{w.idCtl, w.identities, SourceIdentities}, {w.podCtl, pods, SourcePods},
		{w.nodeCtl, nodes, SourceNodes}, {w.svcCtl, svcs, SourceServices},
	} {
		c.ctl.SetInitial(c.inf.GetStore().ListKeys())
		wg.Go(func() { c.ctl.Run(ctx, 1) })
		wg.Go(func() {
			select {
			case <-c.ctl.Synced():
				w.cfg.State.MarkInitialized(c.source)
				w.log.Info("local source initialized", "kind", c.source)
			case <-ctx.Done():
			}
		})
	}
	<-ctx.Done()
	return ctx.Err()
}

// onChange calls f with the object's key on every add, update and delete.
func onChange(f func(key string, obj any)) cache.ResourceEventHandlerFuncs {
	call := func(obj any) {
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err != nil {
			return
		}
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		f(key, obj)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { call(obj) },
		UpdateFunc: func(_, obj any) { call(obj) },
		DeleteFunc: call,
	}
}
