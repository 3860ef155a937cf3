package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	releasecommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/clustermesh/clustermesh/cli/internal/testbed"
	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/cli/status"
	apiserver "github.com/clustermesh/clustermesh/clustermesh-apiserver/server"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

// TestInstall installs into a real kube-apiserver, runs the real
// clustermesh-apiserver with what was installed (its etcd serving the
// generated certificates), and checks the CLI reads the result; then
// re-installs.
func TestInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a kube-apiserver and a clustermesh-apiserver")
	}
	kube := k8stest.Start(t)
	kubeconfig := testbed.Kubeconfig(t, map[string]*k8stest.Cluster{"c1": kube}, "c1")
	kc := "--kubeconfig=" + kubeconfig
	endpoint := "https://127.0.0.1:" + strconv.Itoa(kvtest.FreePort(t))
	args := []string{"install", kc, "--context", "c1", "--cluster-name", "c1", "--cluster-id", "3",
		"--pod-cidrs", "10.3.0.0/16", "--etcd-endpoints", endpoint, "-n", "mesh-system"}

	// Invalid input is refused before anything is written.
	for flag, want := range map[string]string{
		"--cluster-id=0":             "--cluster-id",
		"--cluster-name=C1":          "--cluster-name",
		"--pod-cidrs=10.3.0.0":       "--pod-cidrs",
		"--etcd-endpoints=127.0.0.1": "--etcd-endpoints",
	} {
		if _, _, err := run(t, append(args, flag)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("install %s: %v, want an error naming %s", flag, err, want)
		}
	}

	dry := mustRun(t, append(args, "--dry-run")...)
	if !strings.Contains(dry, "kind: DaemonSet") || !strings.Contains(dry, "cluster-name: \"c1\"") {
		t.Errorf("--dry-run output:\n%.2000s", dry)
	}
	if _, err := kube.Client.CoreV1().ConfigMaps("mesh-system").Get(t.Context(), mesh.ConfigMapName, metav1.GetOptions{}); err == nil {
		t.Error("--dry-run applied")
	}

	out := mustRun(t, args...)
	for _, w := range []string{"generated the CA", "generated the etcd server certificate", "generated the admin certificate",
		`installed cluster c1 (ID 3) into context "c1", namespace mesh-system: Helm release clustermesh revision 1`} {
		if !strings.Contains(out, w) {
			t.Errorf("install output lacks %q:\n%s", w, out)
		}
	}
	for _, get := range []func() error{
		func() error {
			_, err := kube.Client.AppsV1().Deployments("mesh-system").Get(t.Context(), mesh.APIServerName, metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := kube.Client.AppsV1().DaemonSets("mesh-system").Get(t.Context(), mesh.AgentName, metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := kube.Client.RbacV1().ClusterRoles().Get(t.Context(), mesh.AgentName, metav1.GetOptions{})
			return err
		},
	} {
		if err := get(); err != nil {
			t.Error(err)
		}
	}
	// The release is Helm's: helm status, history and upgrade see it.
	checkRelease(t, kubeconfig, 1, "")
	ds, err := kube.Client.AppsV1().DaemonSets("mesh-system").Get(t.Context(), mesh.AgentName, metav1.GetOptions{})
	if err != nil || ds.Labels["app.kubernetes.io/managed-by"] != "Helm" || ds.Annotations["meta.helm.sh/release-name"] != "clustermesh" {
		t.Errorf("the DaemonSet is not the release's: %v %v %v", err, ds.Labels, ds.Annotations)
	}
	cl := &mesh.Cluster{Context: "c1", Namespace: "mesh-system", Kube: kube.Client}
	s, err := mesh.Load(t.Context(), cl)
	if err != nil {
		t.Fatalf("the installed settings do not load: %v", err)
	}
	if s.Name != "c1" || s.ID != 3 || s.Endpoints[0] != endpoint || s.PodCIDRs[0].String() != "10.3.0.0/16" {
		t.Errorf("settings: %+v", s)
	}

	// The real clustermesh-apiserver runs with the installed certificates,
	// as the Deployment mounts them.
	runAPIServer(t, kube, endpoint)
	var r status.Report
	deadline := time.Now().Add(30 * time.Second)
	for {
		in, err := status.Collect(t.Context(), s, status.SocketSource{})
		if err != nil {
			t.Fatal(err)
		}
		if r = status.Build(in); r.APIServer.EtcdReachable && r.APIServer.ClusterConfig && r.APIServer.Exported["services"] &&
			r.APIServer.Exported["nodes"] && r.APIServer.Exported["identities"] && r.APIServer.Exported["ip"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the clustermesh-apiserver does not serve the installed etcd: %+v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Installing again keeps every certificate and changes nothing.
	rvs := secretVersions(t, kube.Client)
	out = mustRun(t, args...)
	if strings.Contains(out, "generated") || !strings.Contains(out, "upgraded cluster c1 (ID 3)") || !strings.Contains(out, "revision 2") {
		t.Errorf("re-install generated certificates or did not upgrade the release:\n%s", out)
	}
	checkRelease(t, kubeconfig, 2, "")
	if after := secretVersions(t, kube.Client); after != rvs {
		t.Errorf("re-install rewrote Secrets: %s -> %s", rvs, after)
	}

	// It keeps the peers `clustermesh connect` wrote, and refuses to rename
	// a connected cluster.
	peers := kube.Client.CoreV1().Secrets("mesh-system")
	sec, err := peers.Get(t.Context(), mesh.PeersSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data = map[string][]byte{"c9": []byte("endpoints: [https://192.0.2.9:2379]\n")}
	if _, err := peers.Update(t.Context(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, append(args, "--image", "registry.example:5000/clustermesh:v2")...)
	if sec, _ = peers.Get(t.Context(), mesh.PeersSecretName, metav1.GetOptions{}); string(sec.Data["c9"]) == "" {
		t.Error("re-install dropped the peers of the mesh Secret")
	}
	checkRelease(t, kubeconfig, 3, "registry.example:5000/clustermesh")
	ds, err = kube.Client.AppsV1().DaemonSets("mesh-system").Get(t.Context(), mesh.AgentName, metav1.GetOptions{})
	if err != nil || ds.Spec.Template.Spec.Containers[0].Image != "registry.example:5000/clustermesh:v2" {
		t.Errorf("--image not applied: %v", err)
	}
	renamed := slicesReplace(args, "--cluster-name", "c2")
	if _, _, err := run(t, renamed...); err == nil || !strings.Contains(err.Error(), "connected to [c9]") ||
		!strings.Contains(err.Error(), "clustermesh disconnect") {
		t.Errorf("renaming a connected cluster: %v", err)
	}

	// An interrupted upgrade (the release left pending) is refused with
	// the way out.
	cfg := helmConfig(t, kubeconfig)
	last, err := cfg.Releases.Last("clustermesh")
	if err != nil {
		t.Fatal(err)
	}
	rel := last.(*releasev1.Release)
	rel.SetStatus(releasecommon.StatusPendingUpgrade, "interrupted")
	if err := cfg.Releases.Update(rel); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), "pending-upgrade") || !strings.Contains(err.Error(), "helm rollback clustermesh -n mesh-system") {
		t.Errorf("install over a pending release: %v", err)
	}
}

// checkRelease reads release clustermesh as the helm command does (Helm's
// SDK, its Secret storage): deployed, at the revision, with the image
// repository among its values when given.
func checkRelease(t *testing.T, kubeconfig string, revision int, repository string) {
	t.Helper()
	r, err := action.NewStatus(helmConfig(t, kubeconfig)).Run("clustermesh")
	if err != nil {
		t.Fatalf("helm status clustermesh: %v", err)
	}
	rel, ok := r.(*releasev1.Release)
	if !ok {
		t.Fatalf("release of type %T", r)
	}
	if rel.Info.Status != releasecommon.StatusDeployed || rel.Version != revision || rel.Chart.Metadata.Name != "clustermesh" {
		t.Errorf("helm status clustermesh: %s revision %d of chart %s, want deployed revision %d", rel.Info.Status, rel.Version, rel.Chart.Metadata.Name, revision)
	}
	if img, _ := rel.Config["image"].(map[string]any); repository != "" && (img == nil || img["repository"] != repository) {
		t.Errorf("release values: image %v, want repository %s", img, repository)
	}
}

// helmConfig is Helm's SDK on namespace mesh-system, as the helm command
// would be with the kubeconfig.
func helmConfig(t *testing.T, kubeconfig string) *action.Configuration {
	t.Helper()
	return helmConfigOf(t, kubeconfig, "")
}

// helmConfigOf is helmConfig on a kubeconfig context ("" the current one).
func helmConfigOf(t *testing.T, kubeconfig, context string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	ns := "mesh-system"
	flags.KubeConfig, flags.Namespace = &kubeconfig, &ns
	if context != "" {
		flags.Context = &context
	}
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func slicesReplace(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == flag {
			out[i+1] = value
		}
	}
	return out
}

func secretVersions(t *testing.T, kube kubernetes.Interface) string {
	t.Helper()
	var v []string
	for _, n := range []string{mesh.CASecretName, mesh.ServerSecretName, mesh.AdminSecretName, mesh.PeersSecretName} {
		s, err := kube.CoreV1().Secrets("mesh-system").Get(t.Context(), n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v = append(v, n+"@"+s.ResourceVersion)
	}
	return strings.Join(v, ",")
}

// runAPIServer runs the clustermesh-apiserver of cluster c1 (ID 3) as the
// chart's Deployment does: embedded etcd on endpoint, certificates from
// the installed Secrets of namespace mesh-system.
func runAPIServer(t *testing.T, kube *k8stest.Cluster, endpoint string) {
	t.Helper()
	runAPIServerOf(t, kube, endpoint, "c1", 3)
}

// runAPIServerOf is runAPIServer for any cluster; stop stops it (as the
// kubelet stops the Deployment's pod once uninstall deleted it) and waits
// for it, the test's end does too.
func runAPIServerOf(t *testing.T, kube *k8stest.Cluster, endpoint, name string, id uint32) (stop func()) {
	t.Helper()
	dir := t.TempDir()
	write := func(secret, key string) string {
		s, err := kube.Client.CoreV1().Secrets("mesh-system").Get(t.Context(), secret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, secret+"-"+key)
		if err := os.WriteFile(p, s.Data[key], 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := apiserver.Config{
		ClusterName: name, ClusterID: id, RestConfig: kube.Config,
		EtcdDataDir: filepath.Join(dir, "etcd"), EtcdListenClientURLs: []string{endpoint},
		TLSCertFile: write(mesh.ServerSecretName, mesh.TLSCertKey), TLSKeyFile: write(mesh.ServerSecretName, mesh.TLSKeyKey),
		TLSCAFile:     write(mesh.ServerSecretName, mesh.CACertKey),
		AdminCertFile: write(mesh.AdminSecretName, mesh.TLSCertKey), AdminKeyFile: write(mesh.AdminSecretName, mesh.TLSKeyKey),
		HeartbeatInterval: time.Second,
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = apiserver.Run(ctx, cfg, nil); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}
