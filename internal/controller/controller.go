// Package controller is a small level-based controller: keys go into a
// rate-limited work queue, and a reconcile function brings the world in line
// with the current state of that key (read from informer caches), not with
// the event that queued it.
//
// Rules: Run owns its workers and returns only after they stopped; a key is
// never reconciled by two workers at once; a failed key is retried with
// per-key exponential backoff.
package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// Reconcile brings one key in line with the current state.
type Reconcile func(ctx context.Context, key string) error

// Controller runs Reconcile for queued keys.
type Controller struct {
	name      string
	reconcile Reconcile
	log       *slog.Logger

	// queue is made at its first use: a workqueue runs a goroutine from
	// its creation until ShutDown (called by Run, or by an owner that
	// never ran it).
	queueOnce sync.Once
	queue     workqueue.TypedRateLimitingInterface[string]

	mu         sync.Mutex // guards initial
	initial    map[string]struct{}
	synced     chan struct{}
	syncedOnce sync.Once
}

// New returns a controller. Nothing runs before a key is queued or Run is
// called; from then on, Run or ShutDown must be called to stop it.
func New(name string, reconcile Reconcile, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Controller{
		name:      name,
		reconcile: reconcile,
		log:       log.With("controller", name),
		synced:    make(chan struct{}),
	}
}

func (c *Controller) q() workqueue.TypedRateLimitingInterface[string] {
	c.queueOnce.Do(func() {
		rl := workqueue.NewTypedItemExponentialFailureRateLimiter[string](5*time.Millisecond, 30*time.Second)
		c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(rl, workqueue.TypedRateLimitingQueueConfig[string]{Name: c.name})
	})
	return c.queue
}

// Enqueue queues key for reconciliation.
func (c *Controller) Enqueue(key string) { c.q().Add(key) }

// SetInitial records the keys of the initial state and queues them; Synced
// is closed once each of them was reconciled successfully once.
func (c *Controller) SetInitial(keys []string) {
	c.mu.Lock()
	c.initial = make(map[string]struct{}, len(keys))
	for _, k := range keys {
		c.initial[k] = struct{}{}
	}
	c.mu.Unlock()
	for _, k := range keys {
		c.q().Add(k)
	}
	if len(keys) == 0 {
		c.markSynced("")
	}
}

// Synced is closed when every initial key was reconciled once.
func (c *Controller) Synced() <-chan struct{} { return c.synced }

func (c *Controller) markSynced(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.initial == nil {
		return
	}
	delete(c.initial, key)
	if len(c.initial) == 0 {
		c.initial = nil
		c.syncedOnce.Do(func() { close(c.synced) })
	}
}

// Len is the number of queued keys.
func (c *Controller) Len() int { return c.q().Len() }

// Run reconciles with the given number of workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.ShutDown()
	wg.Wait()
}

// ShutDown stops the queue and the goroutine it runs from its first key:
// queued keys are dropped, later ones ignored. Run calls it when its ctx
// ends; an owner that may return before calling Run (an informer's handler
// may have queued keys already) calls it when it stops. Calling it again
// does nothing.
func (c *Controller) ShutDown() { c.q().ShutDown() }

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.q().Get()
	if quit {
		return false
	}
	defer c.q().Done(key)
	if err := c.reconcile(ctx, key); err != nil {
		if ctx.Err() == nil {
			c.log.Debug("reconcile failed, retrying", "key", key, "error", err)
			c.q().AddRateLimited(key)
		}
		return true
	}
	c.q().Forget(key)
	c.markSynced(key)
	return true
}
