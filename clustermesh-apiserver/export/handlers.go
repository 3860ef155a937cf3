package export

import (
	"fmt"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
)

// onChange returns handlers calling f with the object's key for every add,
// update and delete (tombstones included).
func onChange(f func(key string, obj any)) cache.ResourceEventHandlerFuncs {
	call := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			f(t.Key, t.Obj)
			return
		}
		if k, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			f(k, obj)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    call,
		UpdateFunc: func(_, obj any) { call(obj) },
		DeleteFunc: call,
	}
}

func (e *Exporter) addHandlers() error {
	core := e.factory.Core().V1()
	regs := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{core.Nodes().Informer(), onChange(func(k string, _ any) { e.nodes.ctrl.Enqueue(k) })},
		{core.Pods().Informer(), onChange(func(k string, _ any) { e.pods.ctrl.Enqueue(k) })},
		{core.Services().Informer(), onChange(func(k string, _ any) { e.services.ctrl.Enqueue(k) })},
		{e.factory.Discovery().V1().EndpointSlices().Informer(), onChange(func(_ string, obj any) {
			if s, ok := obj.(*discoveryv1.EndpointSlice); ok && s.Labels[discoveryv1.LabelServiceName] != "" {
				e.services.ctrl.Enqueue(s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName])
			}
		})},
		// Namespace labels are part of pod identities; the namespace's
		// export switch decides for its services.
		{core.Namespaces().Informer(), onChange(func(k string, _ any) { e.enqueueNamespace(k) })},
		{e.identities, onChange(func(k string, obj any) {
			e.ids.ctrl.Enqueue(k)
			if in, ok := obj.(*cmv1.Identity); ok {
				if lkey, err := in.LabelsKey(); err == nil {
					e.identityChanged(lkey)
				}
			}
		})},
	}
	for _, r := range regs {
		if _, err := r.inf.AddEventHandler(r.h); err != nil {
			return fmt.Errorf("add event handler: %w", err)
		}
	}
	return nil
}

func (e *Exporter) enqueueNamespace(ns string) {
	core := e.factory.Core().V1()
	if pods, err := core.Pods().Lister().Pods(ns).List(labels.Everything()); err == nil {
		for _, p := range pods {
			e.pods.ctrl.Enqueue(p.Namespace + "/" + p.Name)
		}
	}
	if svcs, err := core.Services().Lister().Services(ns).List(labels.Everything()); err == nil {
		for _, s := range svcs {
			e.services.ctrl.Enqueue(s.Namespace + "/" + s.Name)
		}
	}
}

// track records that pod's identity is the one of a label set, so that any
// change of that identity (created, deleted, a lower duplicate appearing)
// reconciles the pod again.
func (e *Exporter) track(lkey, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.podLabels[pod]; ok && old != lkey {
		delete(e.byLabels[old], pod)
		if len(e.byLabels[old]) == 0 {
			delete(e.byLabels, old)
		}
	}
	e.podLabels[pod] = lkey
	if e.byLabels[lkey] == nil {
		e.byLabels[lkey] = map[string]struct{}{}
	}
	e.byLabels[lkey][pod] = struct{}{}
}

// untrack forgets a pod that has no identity (gone, terminated, host network).
func (e *Exporter) untrack(pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.podLabels[pod]; ok {
		delete(e.byLabels[old], pod)
		if len(e.byLabels[old]) == 0 {
			delete(e.byLabels, old)
		}
		delete(e.podLabels, pod)
	}
}

// identityChanged queues the pods of a label set.
func (e *Exporter) identityChanged(lkey string) {
	e.mu.Lock()
	pods := make([]string, 0, len(e.byLabels[lkey]))
	for p := range e.byLabels[lkey] {
		pods = append(pods, p)
	}
	e.mu.Unlock()
	for _, p := range pods {
		e.pods.ctrl.Enqueue(p)
	}
}
