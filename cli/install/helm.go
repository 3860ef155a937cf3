package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/release"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
)

// ReleaseName is the Helm release `clustermesh install` installs: `helm
// status clustermesh -n <namespace>` shows it, `helm upgrade` upgrades it.
const ReleaseName = "clustermesh"

// helmTimeout bounds one install or upgrade (Helm waits for hooks only;
// the chart has none).
const helmTimeout = 5 * time.Minute

// Render renders the chart with the values, client-side (what `helm
// template` prints), the CRDs included.
func Render(ctx context.Context, c *chart.Chart, namespace string, values map[string]any) (string, error) {
	in := action.NewInstall(action.NewConfiguration(action.ConfigurationSetLogger(discard())))
	in.DryRunStrategy = action.DryRunClient
	in.ReleaseName, in.Namespace = ReleaseName, namespace
	in.Replace, in.IncludeCRDs = true, true
	rel, err := in.RunWithContext(ctx, c, values)
	if err != nil {
		return "", chartError(err)
	}
	r, err := v1Release(rel)
	if err != nil {
		return "", err
	}
	return r.Manifest, nil
}

// Result is what Deploy did.
type Result struct {
	// Upgraded is false for a first install.
	Upgraded bool
	// Revision of the release.
	Revision int
	// Objects is how many objects the release holds (CRDs excluded).
	Objects int
}

// Deploy installs the chart as release clustermesh of the namespace, or
// upgrades the release when it exists, as `helm upgrade --install` does:
// with server-side apply, forcing conflicts (so that the release owns the
// fields the chart sets, while fields other managers own, such as the
// peers `clustermesh connect` writes into the mesh Secret, are left
// alone), adopting objects an earlier install left without Helm's
// ownership, and waiting for nothing but hooks. The chart's CRDs are
// applied first, with server-side apply: Helm installs crds/ only on a
// release's first install and never upgrades them.
func Deploy(ctx context.Context, getter genericclioptions.RESTClientGetter, namespace string, c *chart.Chart, values map[string]any) (Result, error) {
	cfg, err := getter.ToRESTConfig()
	if err != nil {
		return Result{}, err
	}
	if err := applyCRDs(ctx, cfg, c); err != nil {
		return Result{}, err
	}
	ac := action.NewConfiguration(action.ConfigurationSetLogger(discard()))
	if err := ac.Init(getter, namespace, "secret"); err != nil {
		return Result{}, fmt.Errorf("helm: %w", err)
	}
	var rel release.Releaser
	last, err := ac.Releases.Last(ReleaseName)
	upgrade := err == nil
	if r, ok := last.(*releasev1.Release); ok && r.Info != nil && r.Info.Status.IsPending() {
		return Result{}, fmt.Errorf("release %s is %s (revision %d): an install or upgrade is running or was interrupted; "+
			"wait for it, or run `helm rollback %s -n %s` (`helm uninstall` if it never deployed), then install again",
			ReleaseName, r.Info.Status, r.Version, ReleaseName, namespace)
	}
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		in := action.NewInstall(ac)
		in.ReleaseName, in.Namespace = ReleaseName, namespace
		in.SkipCRDs, in.TakeOwnership, in.ForceConflicts = true, true, true
		in.WaitStrategy, in.Timeout = kube.HookOnlyStrategy, helmTimeout
		rel, err = in.RunWithContext(ctx, c, values)
	case err != nil:
		return Result{}, fmt.Errorf("read release %s (helm history): %w", ReleaseName, err)
	default:
		up := action.NewUpgrade(ac)
		up.Namespace = namespace
		up.SkipCRDs, up.TakeOwnership, up.ForceConflicts = true, true, true
		up.ServerSideApply = "true"
		up.WaitStrategy, up.Timeout = kube.HookOnlyStrategy, helmTimeout
		up.MaxHistory = 10
		rel, err = up.RunWithContext(ctx, ReleaseName, c, values)
	}
	if err != nil {
		verb := "install"
		if upgrade {
			verb = "upgrade"
		}
		return Result{}, fmt.Errorf("helm %s of release %s: %w (see `helm history %s -n %s`)", verb, ReleaseName, chartError(err), ReleaseName, namespace)
	}
	r, err := v1Release(rel)
	if err != nil {
		return Result{}, err
	}
	objs, err := Decode(r.Manifest)
	if err != nil {
		return Result{}, err
	}
	return Result{Upgraded: upgrade, Revision: r.Version, Objects: len(objs)}, nil
}

func applyCRDs(ctx context.Context, cfg *rest.Config, c *chart.Chart) error {
	var objs []*unstructured.Unstructured
	for _, crd := range c.CRDObjects() {
		o, err := Decode(string(crd.File.Data))
		if err != nil {
			return fmt.Errorf("chart CRD %s: %w", crd.Filename, err)
		}
		objs = append(objs, o...)
	}
	if _, err := Apply(ctx, cfg, objs, false); err != nil {
		return fmt.Errorf("apply the chart's CRDs: %w", err)
	}
	return nil
}

func v1Release(r release.Releaser) (*releasev1.Release, error) {
	rel, ok := r.(*releasev1.Release)
	if !ok {
		return nil, fmt.Errorf("helm returned a release of type %T", r)
	}
	return rel, nil
}

// chartError shortens Helm's error about values the schema refuses to
// one line naming each value (at '/cluster/id': ...).
func chartError(err error) error {
	const marker = "values don't meet the specifications of the schema(s)"
	msg := err.Error()
	if !strings.Contains(msg, marker) {
		return err
	}
	var problems []string
	for line := range strings.SplitSeq(msg, "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "- "); ok {
			problems = append(problems, p)
		}
	}
	if len(problems) == 0 {
		return err
	}
	return fmt.Errorf("invalid chart values (charts/clustermesh/values.schema.json): %s", strings.Join(problems, "; "))
}

func discard() slog.Handler { return slog.NewTextHandler(io.Discard, nil) }
