// Package allocator gives every distinct security label set in use by the
// cluster's pods one numeric identity from the cluster's range, persisted as
// an Identity custom resource (name = the number), and garbage-collects
// identities no pod has used for a grace period.
//
// Rules: exactly one allocator writes a cluster's identities (the
// clustermesh-apiserver's leader); it never reuses a number that still has a
// resource; it deletes nothing before the initial pod list was processed;
// readers resolve duplicates (after a crash) to the lowest number, and the
// allocator deletes the others after the grace period.
package allocator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/identity/podlabels"
	"github.com/clustermesh/clustermesh/internal/clock"
	"github.com/clustermesh/clustermesh/internal/controller"
)

// Config of an Allocator.
type Config struct {
	Cluster   string
	ClusterID identity.ClusterID
	Layout    identity.Layout
	// GCGrace is how long an unused identity is kept (default 15m).
	GCGrace time.Duration
	Clock   clock.Clock
	Log     *slog.Logger
	// Allocated, if set, is called with each new identity.
	Allocated func(id identity.NumericIdentity)
}

// Allocator allocates and collects identities.
type Allocator struct {
	cfg        Config
	rc         rest.Interface
	identities cache.SharedIndexInformer
	pods       corelisters.PodLister
	namespaces corelisters.NamespaceLister
	ctrl       *controller.Controller

	mu sync.Mutex // guards the maps below and next
	// podKey → labels key (kvstore form) of the pods in use.
	podLabels map[string]string
	users     map[string]int
	// created holds identities created but maybe not yet in the informer,
	// trusted for createdTrust only: after that the informer decides (an
	// identity deleted by someone else is then allocated again).
	created     map[string]createdID
	unusedSince map[string]time.Time // identity name → first seen unused
	next        uint32
}

// New returns an allocator; it does nothing before Run.
func New(cfg Config, rc rest.Interface, identities cache.SharedIndexInformer, pods corelisters.PodLister,
	namespaces corelisters.NamespaceLister,
) (*Allocator, error) {
	if err := cfg.Layout.ValidateClusterID(cfg.ClusterID); err != nil {
		return nil, err
	}
	if cfg.GCGrace <= 0 {
		cfg.GCGrace = 15 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &Allocator{
		cfg: cfg, rc: rc, identities: identities, pods: pods, namespaces: namespaces,
		podLabels: map[string]string{}, users: map[string]int{}, created: map[string]createdID{},
		unusedSince: map[string]time.Time{}, next: 1,
	}
	a.ctrl = controller.New("identity-allocator", a.reconcile, cfg.Log)
	return a, nil
}

// IdentityDeleted forgets a created identity that was deleted, so that its
// pods get a new one; the caller requeues the pods.
func (a *Allocator) IdentityDeleted(id identity.NumericIdentity) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for lkey, c := range a.created {
		if c.id == id {
			delete(a.created, lkey)
		}
	}
}

// EnqueuePod queues a pod (namespace/name) for allocation.
func (a *Allocator) EnqueuePod(key string) { a.ctrl.Enqueue(key) }

// Synced is closed once every pod of the initial list has an identity.
func (a *Allocator) Synced() <-chan struct{} { return a.ctrl.Synced() }

// Run allocates until ctx ends. The caches must be synced.
func (a *Allocator) Run(ctx context.Context) error {
	defer a.ctrl.ShutDown() // also when Run returns before running it
	pods, err := a.pods.List(everything)
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	keys := make([]string, 0, len(pods))
	for _, p := range pods {
		keys = append(keys, p.Namespace+"/"+p.Name)
	}
	a.ctrl.SetInitial(keys)
	var wg sync.WaitGroup
	wg.Go(func() { a.ctrl.Run(ctx, 1) })
	wg.Go(func() { a.gcLoop(ctx) })
	wg.Wait()
	return ctx.Err()
}

func (a *Allocator) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil //nolint:nilerr // a malformed key can never succeed
	}
	pod, err := a.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) || err == nil && !podlabels.UsesIdentity(pod) {
		a.setUser(key, "")
		return nil
	}
	if err != nil {
		return fmt.Errorf("get pod %s: %w", key, err)
	}
	nsObj, _ := a.namespaces.Get(ns) // absent namespace: labels left out, retried on its event
	labels := podlabels.ForPod(a.cfg.Cluster, pod, nsObj)
	lkey := labels.SortedKVStoreString()
	a.setUser(key, lkey)
	if _, ok := a.lookup(lkey); ok {
		return nil
	}
	return a.allocate(ctx, lkey, labels)
}

type createdID struct {
	id identity.NumericIdentity
	at time.Time
}

// createdTrust is how long a created identity counts before the informer
// shows it.
const createdTrust = 30 * time.Second

func (a *Allocator) lookup(lkey string) (identity.NumericIdentity, bool) {
	if id, ok := cmv1.LookupByLabels(a.identities.GetIndexer(), lkey); ok {
		return id, true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.created[lkey]
	if ok && a.cfg.Clock.Now().Sub(c.at) < createdTrust {
		return c.id, true
	}
	delete(a.created, lkey)
	return 0, false
}

func (a *Allocator) setUser(podKey, lkey string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old, had := a.podLabels[podKey]
	if had && old == lkey {
		return
	}
	if had {
		a.users[old]--
		if a.users[old] <= 0 {
			delete(a.users, old)
		}
	}
	if lkey == "" {
		delete(a.podLabels, podKey)
		return
	}
	a.podLabels[podKey] = lkey
	a.users[lkey]++
}

// allocate creates an Identity for labels with the next free number of the
// cluster's range.
func (a *Allocator) allocate(ctx context.Context, lkey string, labels identity.Labels) error {
	max := a.cfg.Layout.MaxLocal()
	for tries := uint32(0); tries < max; tries++ {
		a.mu.Lock()
		local := a.next
		a.next++
		if a.next > max {
			a.next = 1
		}
		a.mu.Unlock()
		id, err := a.cfg.Layout.Make(a.cfg.ClusterID, local)
		if err != nil {
			continue // e.g. a reserved number
		}
		name := strconv.FormatUint(uint64(id), 10)
		if _, exists, _ := a.identities.GetIndexer().GetByKey(name); exists {
			continue
		}
		strs := make([]string, 0, labels.Len())
		for l := range labels.All() {
			strs = append(strs, l.String())
		}
		obj := &cmv1.Identity{
			ObjectMeta:     metav1.ObjectMeta{Name: name, Labels: map[string]string{cmv1.ClusterLabel: a.cfg.Cluster}},
			SecurityLabels: strs,
		}
		_, err = cmv1.CreateIdentity(ctx, a.rc, obj)
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("create identity %s for %s: %w", name, lkey, err)
		}
		a.mu.Lock()
		a.created[lkey] = createdID{id: id, at: a.cfg.Clock.Now()}
		a.mu.Unlock()
		a.cfg.Log.Info("allocated identity", "id", id, "labels", lkey)
		if a.cfg.Allocated != nil {
			a.cfg.Allocated(id)
		}
		return nil
	}
	return errors.New("identity range of the cluster is exhausted")
}
