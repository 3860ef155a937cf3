package cli_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	releasecommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	chart "github.com/clustermesh/clustermesh/charts/clustermesh"
	"github.com/clustermesh/clustermesh/cli/install"
	"github.com/clustermesh/clustermesh/cli/internal/testbed"
	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

// TestUpgrade: the release `clustermesh install` installed is upgraded in
// place by the next version's chart (what the next CLI embeds: version and
// appVersion one minor up), given the release's values as install gives
// them: revision 2 deployed, revision 1 superseded, the same DaemonSet and
// Deployment (same UIDs) now running the next version's image, the
// certificates untouched and the peers connect wrote kept. Running this
// CLI's install again goes back to its own version, as revision 3.
func TestUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a kube-apiserver")
	}
	kube := k8stest.Start(t)
	kubeconfig := testbed.Kubeconfig(t, map[string]*k8stest.Cluster{"c1": kube}, "c1")
	args := []string{"install", "--kubeconfig=" + kubeconfig, "--context", "c1", "--cluster-name", "c1", "--cluster-id", "3",
		"--pod-cidrs", "10.3.0.0/16", "--etcd-endpoints", "https://127.0.0.1:" + strconv.Itoa(kvtest.FreePort(t)), "-n", "mesh-system"}
	mustRun(t, args...)
	c, err := chart.Load()
	if err != nil {
		t.Fatal(err)
	}
	current := c.Metadata.AppVersion
	ds0, dep0 := workloads(t, kube, "ghcr.io/clustermesh/clustermesh:"+current)
	peers := kube.Client.CoreV1().Secrets("mesh-system")
	sec, err := peers.Get(t.Context(), mesh.PeersSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data = map[string][]byte{"c9": []byte("endpoints: [https://192.0.2.9:2379]\n")}
	if _, err := peers.Update(t.Context(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	certs := certVersions(t, kube)

	next := nextMinor(t, current)
	c.Metadata.AppVersion, c.Metadata.Version = next, strings.TrimPrefix(next, "v")
	last, err := helmConfig(t, kubeconfig).Releases.Last(install.ReleaseName)
	if err != nil {
		t.Fatal(err)
	}
	getter := genericclioptions.NewConfigFlags(false)
	ctx, ns := "c1", "mesh-system"
	getter.KubeConfig, getter.Context, getter.Namespace = &kubeconfig, &ctx, &ns
	res, err := install.Deploy(t.Context(), getter, ns, c, last.(*releasev1.Release).Config)
	if err != nil {
		t.Fatalf("upgrade to %s: %v", next, err)
	}
	if !res.Upgraded || res.Revision != 2 {
		t.Errorf("upgrade to %s: %+v, want an upgrade to revision 2", next, res)
	}
	checkRelease(t, kubeconfig, 2, "")
	hist, err := helmConfig(t, kubeconfig).Releases.History(install.ReleaseName)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		r := h.(*releasev1.Release)
		want := map[int]releasecommon.Status{1: releasecommon.StatusSuperseded, 2: releasecommon.StatusDeployed}[r.Version]
		wantChart := map[int]string{1: current, 2: next}[r.Version]
		if r.Info.Status != want || r.Chart.Metadata.AppVersion != wantChart {
			t.Errorf("helm history: revision %d %s of %s, want %s of %s", r.Version, r.Info.Status, r.Chart.Metadata.AppVersion, want, wantChart)
		}
	}
	ds, dep := workloads(t, kube, "ghcr.io/clustermesh/clustermesh:"+next)
	if ds.UID != ds0.UID || dep.UID != dep0.UID || ds.Generation <= ds0.Generation || dep.Generation <= dep0.Generation {
		t.Errorf("not upgraded in place: DaemonSet %s gen %d -> %s gen %d, Deployment %s gen %d -> %s gen %d",
			ds0.UID, ds0.Generation, ds.UID, ds.Generation, dep0.UID, dep0.Generation, dep.UID, dep.Generation)
	}
	if after := certVersions(t, kube); after != certs {
		t.Errorf("the upgrade rewrote certificate Secrets: %s -> %s", certs, after)
	}
	if sec, _ = peers.Get(t.Context(), mesh.PeersSecretName, metav1.GetOptions{}); len(sec.Data["c9"]) == 0 {
		t.Error("the upgrade dropped the peers of the mesh Secret")
	}

	// This CLI's install goes back to its own chart.
	if out := mustRun(t, args...); !strings.Contains(out, "upgraded cluster c1 (ID 3)") || !strings.Contains(out, "revision 3") {
		t.Errorf("install after the upgrade:\n%s", out)
	}
	workloads(t, kube, "ghcr.io/clustermesh/clustermesh:"+current)
}

// workloads returns the installed DaemonSet and Deployment, checking that
// every container of theirs runs image.
func workloads(t *testing.T, kube *k8stest.Cluster, image string) (*appsv1.DaemonSet, *appsv1.Deployment) {
	t.Helper()
	ds, err := kube.Client.AppsV1().DaemonSets("mesh-system").Get(t.Context(), mesh.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := kube.Client.AppsV1().Deployments("mesh-system").Get(t.Context(), mesh.APIServerName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []struct {
		what string
		pod  []string
	}{{"DaemonSet " + ds.Name, images(ds.Spec.Template.Spec.InitContainers, ds.Spec.Template.Spec.Containers)},
		{"Deployment " + dep.Name, images(dep.Spec.Template.Spec.InitContainers, dep.Spec.Template.Spec.Containers)}} {
		for _, img := range spec.pod {
			if img != image {
				t.Errorf("%s runs %s, want %s", spec.what, img, image)
			}
		}
	}
	return ds, dep
}

func images(lists ...[]corev1.Container) []string {
	var out []string
	for _, l := range lists {
		for _, c := range l {
			out = append(out, c.Image)
		}
	}
	return out
}

// certVersions are the resource versions of the certificate Secrets.
func certVersions(t *testing.T, kube *k8stest.Cluster) string {
	t.Helper()
	var v []string
	for _, n := range []string{mesh.CASecretName, mesh.ServerSecretName, mesh.AdminSecretName} {
		s, err := kube.Client.CoreV1().Secrets("mesh-system").Get(t.Context(), n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v = append(v, n+"@"+s.ResourceVersion)
	}
	return strings.Join(v, ",")
}

// nextMinor is v one minor up: v0.7.0-dev -> v0.8.0.
func nextMinor(t *testing.T, v string) string {
	t.Helper()
	m := regexp.MustCompile(`^v(\d+)\.(\d+)\.`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("chart appVersion %q is not vMAJOR.MINOR.PATCH", v)
	}
	minor, _ := strconv.Atoi(m[2])
	return fmt.Sprintf("v%s.%d.0", m[1], minor+1)
}
