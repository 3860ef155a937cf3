package export

import (
	"context"
	"errors"
	"fmt"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/clustermesh/clustermesh/services"
)

func (e *Exporter) reconcileService(_ context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil //nolint:nilerr // a malformed key has no service
	}
	etcdKey := e.cfg.Paths.Service(e.cfg.Cluster, ns, name)
	core := e.factory.Core().V1()
	svc, err := core.Services().Lister().Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		e.services.store.Delete(etcdKey)
		e.clearReport("service", key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get service %s: %w", key, err)
	}
	ann, problems := services.ParseAnnotations(svc)
	nsExports := e.cfg.DefaultGlobalNamespace
	if nsObj, err := core.Namespaces().Lister().Get(ns); err == nil {
		exp, nerr := services.NamespaceExports(nsObj, e.cfg.DefaultGlobalNamespace)
		if nerr != nil {
			e.report(nsObj, ns, "namespace", "InvalidAnnotation", nerr.Error())
		}
		nsExports = exp
	}
	if !services.ShouldExport(ann, nsExports) {
		e.reportAll(svc, key, problems)
		e.services.store.Delete(etcdKey)
		return nil
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
	slices, err := e.factory.Discovery().V1().EndpointSlices().Lister().EndpointSlices(ns).List(sel)
	if err != nil {
		return fmt.Errorf("list endpoint slices of %s: %w", key, err)
	}
	cs, buildProblems := services.BuildClusterService(e.cfg.Cluster, uint32(e.cfg.ClusterID), svc, slices)
	problems = append(problems, buildProblems...)
	e.reportAll(svc, key, problems)
	for _, p := range buildProblems {
		if errors.Is(p, services.ErrNotExportable) {
			e.services.store.Delete(etcdKey)
			return nil
		}
	}
	b, err := cs.Marshal()
	if err != nil {
		return fmt.Errorf("encode service %s: %w", key, err)
	}
	return e.services.store.Upsert(etcdKey, b)
}

// reportAll reports a service's problems as one Event (or clears them).
func (e *Exporter) reportAll(svc runtime.Object, key string, problems []error) {
	if len(problems) == 0 {
		e.clearReport("service", key)
		return
	}
	reason := "InvalidService"
	if errors.Is(problems[0], services.ErrInvalidAnnotation) {
		reason = "InvalidAnnotation"
	}
	e.report(svc, key, "service", reason, errors.Join(problems...).Error())
}
