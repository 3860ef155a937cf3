package local

import (
	"context"
	"fmt"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/services"
)

// reconcileService writes a local Service with its local backends (from
// its EndpointSlices) into the localservices table.
func (w *Watcher) reconcileService(_ context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil //nolint:nilerr // a malformed key names no Service
	}
	svc, err := w.factory.Core().V1().Services().Lister().Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get service %s: %w", key, err)
	}
	var row *state.LocalService
	if svc != nil {
		sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
		slices, err := w.factory.Discovery().V1().EndpointSlices().Lister().EndpointSlices(ns).List(sel)
		if err != nil {
			return fmt.Errorf("list endpointslices of service %s: %w", key, err)
		}
		ann, annErrs := services.ParseAnnotations(svc)
		fes, bes, problems := services.Local(w.cfg.Cluster, svc, slices)
		for _, p := range append(annErrs, problems...) {
			// The clustermesh-apiserver reports these as Events on the
			// Service; the agent only logs them.
			w.log.Debug("service partly ignored", "service", key, "problem", p)
		}
		row = &state.LocalService{Namespace: ns, Name: name, Annotations: ann, Frontends: fes, Backends: bes}
	}
	err = w.cfg.State.Update(func(t *state.WriteTxn) error {
		if row == nil {
			return t.DeleteLocalService(ns, name)
		}
		return t.UpsertLocalService(*row)
	})
	if err != nil {
		return fmt.Errorf("write service %s: %w", key, err)
	}
	return nil
}

// enqueueSliceService queues the Service an EndpointSlice belongs to.
func (w *Watcher) enqueueSliceService(obj any) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" {
		w.svcCtl.Enqueue(s.Namespace + "/" + svc)
	}
}
