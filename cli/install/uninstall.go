package install

import (
	"context"
	"errors"
	"fmt"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
)

// NamespaceLabel marks a namespace `clustermesh install` created, and
// that `clustermesh uninstall` therefore deletes (a namespace that existed
// before, kube-system for one, is left alone).
const NamespaceLabel = "clustermesh.io/created-by"

// NamespaceLabelValue is NamespaceLabel's value.
const NamespaceLabelValue = "clustermesh-install"

// identitiesCRD holds the clustermesh-apiserver's allocations, nothing a
// user wrote: it is deleted with its objects.
const identitiesCRD = "identities.clustermesh.io"

// UninstallResult is what Uninstall did.
type UninstallResult struct {
	// Release: the release existed and Helm uninstalled it; Revision was
	// its last revision.
	Release  bool
	Revision int
	// Deleted are the release's objects Helm deleted (Kind/name); Kept
	// those its resource policy keeps (the mesh Secret), which the caller
	// deletes.
	Deleted, Kept []string
	// DeletedCRDs and KeptCRDs: the chart's CRDs, deleted, or kept with
	// why (objects a user wrote remain).
	DeletedCRDs, KeptCRDs []string
}

// Uninstall uninstalls release clustermesh of the namespace through Helm's
// SDK, as `helm uninstall` does (the release's objects, background
// deletion, its history purged), then deletes the chart's CRDs (which
// Helm never deletes) unless objects a user wrote remain in them. A
// missing release is not an error: what remains of an earlier uninstall
// is still cleaned, so running it again finishes an interrupted one.
func Uninstall(ctx context.Context, getter genericclioptions.RESTClientGetter, namespace string, c *chart.Chart) (UninstallResult, error) {
	var res UninstallResult
	ac := action.NewConfiguration(action.ConfigurationSetLogger(discard()))
	if err := ac.Init(getter, namespace, "secret"); err != nil {
		return res, fmt.Errorf("helm: %w", err)
	}
	last, err := ac.Releases.Last(ReleaseName)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
	case err != nil:
		return res, fmt.Errorf("read release %s (helm history): %w", ReleaseName, err)
	default:
		r, err := v1Release(last)
		if err != nil {
			return res, err
		}
		objs, err := Decode(r.Manifest)
		if err != nil {
			return res, fmt.Errorf("release %s revision %d: %w", ReleaseName, r.Version, err)
		}
		un := action.NewUninstall(ac)
		un.WaitStrategy, un.Timeout = kube.HookOnlyStrategy, helmTimeout
		un.DeletionPropagation = "background"
		if _, err := un.Run(ReleaseName); err != nil {
			return res, fmt.Errorf("helm uninstall of release %s (namespace %s): %w (run the same uninstall again to finish)", ReleaseName, namespace, err)
		}
		res.Release, res.Revision = true, r.Version
		for _, o := range objs {
			name := o.GetKind() + "/" + o.GetName()
			if o.GetAnnotations()[kube.ResourcePolicyAnno] == kube.KeepPolicy {
				res.Kept = append(res.Kept, name)
			} else {
				res.Deleted = append(res.Deleted, name)
			}
		}
	}
	cfg, err := getter.ToRESTConfig()
	if err != nil {
		return res, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return res, err
	}
	if err := deleteCRDs(ctx, dyn, c, &res); err != nil {
		return res, fmt.Errorf("%w (run the same uninstall again to finish)", err)
	}
	return res, nil
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// deleteCRDs deletes each of the chart's CRDs that is installed, unless
// it still holds objects a user wrote (policies): deleting the CRD would
// delete them.
func deleteCRDs(ctx context.Context, dyn dynamic.Interface, c *chart.Chart, res *UninstallResult) error {
	for _, f := range c.CRDObjects() {
		objs, err := Decode(string(f.File.Data))
		if err != nil {
			return fmt.Errorf("chart CRD %s: %w", f.Filename, err)
		}
		for _, o := range objs {
			name := o.GetName()
			cur, err := dyn.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				continue
			case err != nil:
				return fmt.Errorf("read CRD %s: %w", name, err)
			case cur.GetDeletionTimestamp() != nil:
				continue // being deleted (its objects first)
			}
			if name != identitiesCRD {
				group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
				plural, _, _ := unstructured.NestedString(o.Object, "spec", "names", "plural")
				kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
				version, err := servedVersion(o.Object)
				if err != nil {
					return fmt.Errorf("chart CRD %s: %w", name, err)
				}
				list, err := dyn.Resource(schema.GroupVersionResource{Group: group, Version: version, Resource: plural}).
					List(ctx, metav1.ListOptions{Limit: 1})
				if err != nil {
					return fmt.Errorf("list %s: %w", plural, err)
				}
				if len(list.Items) > 0 {
					res.KeptCRDs = append(res.KeptCRDs, fmt.Sprintf("CRD %s: %s objects remain (for one %s): deleting the CRD would delete them; "+
						"delete them (kubectl delete %s --all -A), then run uninstall again", name, kind, objectName(list.Items[0].GetNamespace(), list.Items[0].GetName()), plural))
					continue
				}
			}
			err = dyn.Resource(crdResource).Delete(ctx, name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete CRD %s: %w", name, err)
			}
			res.DeletedCRDs = append(res.DeletedCRDs, name)
		}
	}
	return nil
}

func objectName(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// servedVersion is the CRD's storage version.
func servedVersion(obj map[string]any) (string, error) {
	spec, _ := obj["spec"].(map[string]any)
	versions, _ := spec["versions"].([]any)
	for _, v := range versions {
		m, _ := v.(map[string]any)
		if storage, _ := m["storage"].(bool); storage {
			if name, _ := m["name"].(string); name != "" {
				return name, nil
			}
		}
	}
	return "", errors.New("no storage version")
}
