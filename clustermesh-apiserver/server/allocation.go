package server

import (
	"context"
	"fmt"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/allocator"
	"github.com/clustermesh/clustermesh/identity"
)

var everything = labels.Everything()

func (s *Server) addAllocatorHandlers() error {
	core := s.factory.Core().V1()
	enqueue := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			s.enqueuePod(k)
		}
	}
	if _, err := core.Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("pod handler: %w", err)
	}
	// A namespace's labels are part of its pods' identities.
	nsChanged := func(obj any) {
		meta, err := metaOf(obj)
		if err != nil {
			return
		}
		pods, _ := core.Pods().Lister().Pods(meta.GetName()).List(everything)
		for _, p := range pods {
			s.enqueuePod(p.Namespace + "/" + p.Name)
		}
	}
	if _, err := core.Namespaces().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: nsChanged, UpdateFunc: func(_, o any) { nsChanged(o) }, DeleteFunc: nsChanged,
	}); err != nil {
		return fmt.Errorf("namespace handler: %w", err)
	}
	// An identity deleted by someone else while pods use it is allocated
	// again: requeue every pod (deletions are rare).
	if _, err := s.identities.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if in, ok := obj.(*cmv1.Identity); ok {
			if id, err := in.NumericID(); err == nil {
				s.allocMu.Lock()
				if s.alloc != nil {
					s.alloc.IdentityDeleted(id)
				}
				s.allocMu.Unlock()
			}
		}
		pods, _ := core.Pods().Lister().List(everything)
		for _, p := range pods {
			s.enqueuePod(p.Namespace + "/" + p.Name)
		}
	}}); err != nil {
		return fmt.Errorf("identity handler: %w", err)
	}
	return nil
}

func metaOf(obj any) (metav1.Object, error) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	return apimeta.Accessor(obj)
}

// enqueuePod hands a pod to the allocator of the current leadership term.
func (s *Server) enqueuePod(key string) {
	s.allocMu.Lock()
	a := s.alloc
	s.allocMu.Unlock()
	if a != nil {
		a.EnqueuePod(key)
	}
}

// allocate runs a fresh allocator for one leadership term.
func (s *Server) allocate(ctx context.Context) error {
	core := s.factory.Core().V1()
	a, err := allocator.New(allocator.Config{
		Cluster: s.cfg.ClusterName, ClusterID: identity.ClusterID(s.cfg.ClusterID), Layout: s.layout,
		GCGrace: s.cfg.IdentityGCGrace, Log: s.log,
	}, s.rc, s.identities, core.Pods().Lister(), core.Namespaces().Lister())
	if err != nil {
		return err
	}
	s.allocMu.Lock()
	s.alloc = a
	s.allocMu.Unlock()
	defer func() {
		s.allocMu.Lock()
		s.alloc = nil
		s.allocMu.Unlock()
	}()
	return a.Run(ctx)
}

// runAllocator allocates identities, under leader election when enabled.
func (s *Server) runAllocator(ctx context.Context) error {
	if !s.cfg.LeaderElect {
		return s.allocate(ctx)
	}
	id := s.cfg.Identity
	if id == "" {
		id = hostname()
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, s.cfg.LeaderElectionNamespace, s.cfg.LeaderElectionID,
		s.kube.CoreV1(), s.kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		return fmt.Errorf("leader election lock: %w", err)
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			ReleaseOnCancel: true, Name: s.cfg.LeaderElectionID,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					s.log.Info("leading: allocating identities", "identity", id)
					if err := s.allocate(ctx); err != nil && ctx.Err() == nil {
						s.log.Error("identity allocation stopped", "error", err)
					}
				},
				OnStoppedLeading: func() { s.log.Info("stopped leading", "identity", id) },
			},
		})
	}
	return ctx.Err()
}
