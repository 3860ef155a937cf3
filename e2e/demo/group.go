package demo

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// group runs the demo's components and stops them all.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

func newGroup(ctx context.Context) *group {
	ctx, cancel := context.WithCancel(ctx)
	return &group{ctx: ctx, cancel: cancel}
}

// run runs f until the group stops; an early error is kept for err.
func (g *group) run(name string, f func(context.Context) error) {
	g.wg.Go(func() {
		if err := f(g.ctx); err != nil && g.ctx.Err() == nil {
			g.mu.Lock()
			g.errs = append(g.errs, fmt.Errorf("%s stopped: %w", name, err))
			g.mu.Unlock()
		}
	})
}

// err returns what failed so far.
func (g *group) err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return errors.Join(g.errs...)
}

func (g *group) stop() {
	g.cancel()
	g.wg.Wait()
}
