// Package policywatch feeds the policy engine from the local Kubernetes API
// (NetworkPolicies and the project's policy kinds, through informers) and
// from the agent's state (identities of every cluster, this node's
// endpoints, the cluster's named ports), and writes its results back into
// the state: each endpoint's policy (policies table) and the CIDR
// identities of policies (the state's cidridentities table).
//
// Rules: one goroutine (Run) owns the engine; Inspect hands it read-only
// queries (the local API's policy trace). Informer handlers only mark
// policies dirty. The state is read through snapshots and diffed by row
// pointer (rows are immutable), so an unchanged identity costs nothing and
// the engine sees only real changes. Problems of a policy are reported as
// a Warning Event on it when it is compiled.
package policywatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/clustermesh/clustermesh/agent/policy"
	"github.com/clustermesh/clustermesh/agent/state"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Source is the state source the controller marks initialized after its
// first complete pass.
const Source = "local/policy"

// Config of a Controller.
type Config struct {
	Cluster             string
	DefaultLocalCluster bool
	Kube                kubernetes.Interface
	Policies            rest.Interface // clustermesh.io REST client
	State               *state.State
	// WaitFor are the state sources to wait for before the first pass
	// (the local identities and endpoints).
	WaitFor []string
	// Events records Warning Events on invalid policies (nil: none).
	Events EventRecorder
	Log    *slog.Logger
	// MinInterval bounds how often a pass runs (default 50ms): changes in
	// between are handled together.
	MinInterval time.Duration
}

// EventRecorder is the part of client-go's record.EventRecorder used.
type EventRecorder interface {
	Event(object runtime.Object, eventtype, reason, message string)
}

// Controller runs the policy engine.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	engine  *policy.Engine
	factory informers.SharedInformerFactory
	cmnp    cache.SharedIndexInformer
	ccmnp   cache.SharedIndexInformer

	// Owned by Run.
	identities map[identity.NumericIdentity]*state.IdentityRow
	endpoints  map[string]*state.Endpoint
	ids        *idAllocator
	cidrs      map[netip.Prefix]identity.NumericIdentity // ipcache rows written
	written    map[string]uint64                         // endpoint → generation of the policy written
	namedPorts map[string][]schema.NamedPort

	// inspect hands Run (the engine's owner) a function to run on the
	// engine: Inspect's queries.
	inspect chan *inspectReq

	mu       sync.Mutex // guards dirty and problems
	dirty    map[policy.PolicyKey]struct{}
	problems map[policy.PolicyKey][]policy.Problem
	wake     chan struct{}
}

// New returns a controller; nothing runs before Run.
func New(cfg Config) (*Controller, error) {
	if cfg.Kube == nil || cfg.Policies == nil || cfg.State == nil {
		return nil, errors.New("policy controller: Kube, Policies and State are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 50 * time.Millisecond
	}
	lw := func(res string) *cache.ListWatch {
		return cache.NewListWatchFromClient(cfg.Policies, res, metav1.NamespaceAll, fields.Everything())
	}
	return &Controller{
		cfg: cfg, log: cfg.Log.With("component", "policy"),
		engine:     policy.NewEngine(policy.Config{Cluster: cfg.Cluster, DefaultLocalCluster: cfg.DefaultLocalCluster}),
		factory:    informers.NewSharedInformerFactory(cfg.Kube, 0),
		cmnp:       cache.NewSharedIndexInformer(lw(cmv1.NetworkPolicyResource.Resource), &cmv1.ClusterMeshNetworkPolicy{}, 0, cache.Indexers{}),
		ccmnp:      cache.NewSharedIndexInformer(lw(cmv1.ClusterwideNetworkPolicyResource.Resource), &cmv1.ClusterMeshClusterwideNetworkPolicy{}, 0, cache.Indexers{}),
		identities: map[identity.NumericIdentity]*state.IdentityRow{}, endpoints: map[string]*state.Endpoint{},
		ids: newIDAllocator(), written: map[string]uint64{},
		dirty: map[policy.PolicyKey]struct{}{}, problems: map[policy.PolicyKey][]policy.Problem{},
		wake: make(chan struct{}, 1), inspect: make(chan *inspectReq),
	}, nil
}

// ErrNotReady is Inspect's answer before the first pass computed the
// policies.
var ErrNotReady = errors.New("the agent's policy engine has not computed its first results yet; retry in a moment")

type inspectReq struct {
	fn   func(*policy.Engine)
	done chan struct{}
	err  error
}

// Inspect runs fn on the engine in Run's goroutine, which owns it, between
// two passes, and returns once fn did; fn must only read (Trace,
// EndpointPolicies) and not keep the engine. It fails when ctx ends first
// (Run not running, or stopped).
func (c *Controller) Inspect(ctx context.Context, fn func(*policy.Engine)) error {
	r := &inspectReq{fn: fn, done: make(chan struct{})}
	select {
	case c.inspect <- r:
	case <-ctx.Done():
		return fmt.Errorf("ask the policy engine: %w", ctx.Err())
	}
	<-r.done // Run always finishes a request it took
	return r.err
}

// run answers r (in Run's goroutine): fn runs only once the engine has
// computed the first results.
func (c *Controller) run(r *inspectReq, ready bool) {
	defer close(r.done)
	if !ready {
		r.err = ErrNotReady
		return
	}
	r.fn(c.engine)
}

// Problems returns the problems of every policy that has some.
func (c *Controller) Problems() map[policy.PolicyKey][]policy.Problem {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[policy.PolicyKey][]policy.Problem, len(c.problems))
	for k, v := range c.problems {
		out[k] = v
	}
	return out
}

// Run watches and computes until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	np := c.factory.Networking().V1().NetworkPolicies().Informer()
	for prefix, inf := range map[string]cache.SharedIndexInformer{"k8s/": np, "cmnp/": c.cmnp, "ccmnp/": c.ccmnp} {
		if _, err := inf.AddEventHandler(c.handler(prefix)); err != nil {
			return fmt.Errorf("add policy event handler: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait(); c.factory.Shutdown() }()
	c.factory.Start(ctx.Done())
	wg.Go(func() { c.cmnp.Run(ctx.Done()) })
	wg.Go(func() { c.ccmnp.Run(ctx.Done()) })
	if !cache.WaitForCacheSync(ctx.Done(), np.HasSynced, c.cmnp.HasSynced, c.ccmnp.HasSynced) {
		return fmt.Errorf("wait for the policy caches: %w", ctx.Err())
	}
	initialized := false
	// The policy results depend on identities, endpoints and named ports
	// (and on the readiness of their sources), not on the ipcache or the
	// peers' nodes and services, whose churn must not wake the engine.
	// Identities and endpoints are read change by change.
	sub := c.cfg.State.Subscribe(state.TableIdentities, state.TableEndpoints)
	defer sub.Close()
	watch := c.cfg.State.WatchTables(state.TableNamedPorts, state.TableInitialized)
	for {
		changed := watch.Changed(ctx)
		if !initialized && c.cfg.State.Initialized(c.cfg.WaitFor...) {
			initialized = true
		}
		if initialized {
			if err := c.pass(sub); err != nil {
				c.log.Warn("writing policy results failed, retrying", "error", err)
			} else if !c.cfg.State.Initialized(Source) {
				c.cfg.State.MarkInitialized(Source)
			}
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
				waiting = false
			case <-sub.Changed():
				waiting = false
			case <-c.wake:
				waiting = false
			case r := <-c.inspect:
				c.run(r, c.cfg.State.Initialized(Source))
			}
		}
		coalesce := time.NewTimer(c.cfg.MinInterval) // coalesce bursts of changes
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				coalesce.Stop()
				return ctx.Err()
			case <-coalesce.C:
				waiting = false
			case r := <-c.inspect:
				c.run(r, c.cfg.State.Initialized(Source))
			}
		}
	}
}

// handler marks a policy dirty on any event.
func (c *Controller) handler(prefix string) cache.ResourceEventHandlerFuncs {
	mark := func(obj any) {
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err != nil {
			return
		}
		c.mu.Lock()
		c.dirty[policy.PolicyKey(prefix+key)] = struct{}{}
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: mark, UpdateFunc: func(_, o any) { mark(o) }, DeleteFunc: mark}
}

// pass brings the engine up to date and writes its results. Identities
// and endpoints are read change by change; all of them only when the
// subscription lost changes (the first pass, or the controller fell
// behind).
func (c *Controller) pass(sub *state.Subscription) error {
	changes, sn, lost := sub.Next()
	if lost {
		c.syncIdentities(sn)
		c.syncEndpoints(sn)
	} else {
		c.applyChanges(sn, changes)
	}
	if np := sn.NamedPorts(); !reflect.DeepEqual(np, c.namedPorts) {
		c.namedPorts = np
		c.engine.SetNamedPorts(np)
	}
	c.syncPolicies()
	return c.write(sn)
}

// applyChanges gives the engine the identities and endpoints that changed:
// a change names the row, the snapshot gives its current value (rows are
// immutable, so an unchanged row is the same pointer).
func (c *Controller) applyChanges(sn *state.Snapshot, changes []state.Change) {
	for _, ch := range changes {
		switch ch.Table {
		case state.TableIdentities:
			for _, id := range state.IdentityChanges(ch) {
				c.syncIdentity(id, sn.IdentityRow(id))
			}
		case state.TableEndpoints:
			r, _ := ch.After.(*state.Endpoint)
			if r == nil {
				r, _ = ch.Before.(*state.Endpoint)
			}
			if r != nil {
				c.syncEndpoint(r.Namespace+"/"+r.Name, sn.EndpointRow(r.Namespace, r.Name))
			}
		}
	}
}

// syncIdentity gives the engine identity id's current row (nil: gone).
func (c *Controller) syncIdentity(id identity.NumericIdentity, r *state.IdentityRow) {
	old, had := c.identities[id]
	switch {
	case r == nil && had:
		delete(c.identities, id)
		c.engine.DeleteIdentity(id)
	case r != nil && old != r:
		c.identities[id] = r
		c.engine.UpsertIdentity(policy.Identity{ID: r.ID, Labels: r.Labels})
	}
}

// syncEndpoint gives the engine endpoint key's current row (nil: gone).
func (c *Controller) syncEndpoint(key string, r *state.Endpoint) {
	old, had := c.endpoints[key]
	switch {
	case r == nil && had:
		delete(c.endpoints, key)
		c.engine.DeleteEndpoint(key)
	case r != nil && old != r:
		c.endpoints[key] = r
		c.engine.UpsertEndpoint(policy.Endpoint{Key: key, Namespace: r.Namespace, ID: r.ID, Labels: r.Labels, NamedPorts: r.NamedPorts})
	}
}

func (c *Controller) syncIdentities(sn *state.Snapshot) {
	seen := make(map[identity.NumericIdentity]bool, len(c.identities))
	sn.IdentityRows(func(r *state.IdentityRow) {
		seen[r.ID] = true
		if c.identities[r.ID] != r {
			c.identities[r.ID] = r
			c.engine.UpsertIdentity(policy.Identity{ID: r.ID, Labels: r.Labels})
		}
	})
	for id := range c.identities {
		if !seen[id] {
			delete(c.identities, id)
			c.engine.DeleteIdentity(id)
		}
	}
}

func (c *Controller) syncEndpoints(sn *state.Snapshot) {
	seen := make(map[string]bool, len(c.endpoints))
	sn.EndpointRows(func(r *state.Endpoint) {
		key := r.Namespace + "/" + r.Name
		seen[key] = true
		if c.endpoints[key] != r {
			c.endpoints[key] = r
			c.engine.UpsertEndpoint(policy.Endpoint{Key: key, Namespace: r.Namespace, ID: r.ID, Labels: r.Labels, NamedPorts: r.NamedPorts})
		}
	})
	for key := range c.endpoints {
		if !seen[key] {
			delete(c.endpoints, key)
			c.engine.DeleteEndpoint(key)
		}
	}
}

// write stores every endpoint's policy and the CIDR identities in one
// transaction; unchanged rows are not rewritten.
func (c *Controller) write(sn *state.Snapshot) error {
	keys := c.engine.Endpoints()
	want := make(map[string]bool, len(keys))
	written := map[string]uint64{} // generations this write stores
	cidrs := c.engine.CIDRIdentities()
	err := c.cfg.State.Update(func(t *state.WriteTxn) error {
		for _, key := range keys {
			want[key] = true
			p, gen, _ := c.engine.EndpointPolicyGen(key)
			if c.written[key] == gen {
				continue // unchanged since written
			}
			if err := t.UpsertEndpointPolicy(state.EndpointPolicyRow{Key: key, DatapathID: c.ids.get(key), Policy: p}); err != nil {
				return err
			}
			written[key] = gen
		}
		for _, r := range sn.EndpointPolicies() {
			if !want[r.Key] {
				delete(c.written, r.Key)
				c.ids.release(r.Key)
				if err := t.DeleteEndpointPolicy(r.Key); err != nil {
					return err
				}
			}
		}
		for p := range c.cidrs {
			if _, ok := cidrs[p]; !ok {
				if err := t.DeleteCIDRIdentity(p); err != nil {
					return err
				}
			}
		}
		for p, id := range cidrs {
			if old, ok := c.cidrs[p]; ok && old == id {
				continue
			}
			if err := t.UpsertCIDRIdentity(p, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		c.cidrs = cidrs
		for k, g := range written {
			c.written[k] = g
		}
	}
	return err
}

// report records a policy's problems and emits a Warning Event on it.
func (c *Controller) report(key policy.PolicyKey, obj runtime.Object, problems []policy.Problem) {
	c.mu.Lock()
	if len(problems) == 0 {
		delete(c.problems, key)
	} else {
		c.problems[key] = problems
	}
	c.mu.Unlock()
	if len(problems) == 0 || c.cfg.Events == nil {
		return
	}
	for _, p := range problems {
		c.cfg.Events.Event(obj, corev1.EventTypeWarning, "PolicyInvalid", p.String()+" (this part of the policy is ignored; the rest applies)")
	}
	c.log.Warn("policy partly ignored", "policy", string(key), "problems", len(problems), "first", problems[0].String())
}
