package cli_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	releasev1 "helm.sh/helm/v4/pkg/release/v1"

	"github.com/clustermesh/clustermesh/cli/install"
	"github.com/clustermesh/clustermesh/cli/internal/testbed"
	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

// TestUninstall installs two clusters into real kube-apiservers, runs
// their real clustermesh-apiservers and connects them with `clustermesh
// connect`; then: uninstall refuses while peers are connected and changes
// nothing; --force forgets the peers locally, says what remains on the
// peer (and the patch it prints removes exactly that), and leaves no
// object of the release, nor the release's history, the mesh Secret, the
// CRDs or the namespace install created; the peer, cleaned, uninstalls
// without --force, keeping a CRD while a policy remains in it until the
// policy is deleted; a last run has nothing to do.
func TestUninstall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts two kube-apiservers and two clustermesh-apiservers")
	}
	kubes := map[string]*k8stest.Cluster{"c1": k8stest.Start(t), "c2": k8stest.Start(t)}
	kubeconfig := testbed.Kubeconfig(t, kubes, "c1")
	kc := "--kubeconfig=" + kubeconfig
	stops := map[string]func(){}
	for i, name := range []string{"c1", "c2"} {
		endpoint := "https://127.0.0.1:" + strconv.Itoa(kvtest.FreePort(t))
		mustRun(t, "install", kc, "--context", name, "--cluster-name", name, "--cluster-id", strconv.Itoa(i+1),
			"--pod-cidrs", "10."+strconv.Itoa(i+1)+".0.0/16", "--etcd-endpoints", endpoint, "-n", "mesh-system")
		stops[name] = runAPIServerOf(t, kubes[name], endpoint, name, uint32(i+1))
	}
	// connect retries until both etcds serve with their remote role.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, errOut, err := run(t, "connect", kc, "-n", "mesh-system", "--context", "c1", "--destination-context", "c2")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect: %v\n%s", err, errOut)
		}
		time.Sleep(500 * time.Millisecond)
	}
	manifest := releaseObjects(t, kubeconfig, "c1")

	// Refused while connected; nothing changes.
	before := secretVersionsIn(t, kubes["c1"])
	_, _, err := run(t, "uninstall", kc, "-n", "mesh-system", "--context", "c1")
	if err == nil || !strings.Contains(err.Error(), "is connected to c2") ||
		!strings.Contains(err.Error(), "clustermesh disconnect --context c1 --destination-context <context of c2>") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("uninstall of a connected cluster: %v", err)
	}
	if after := secretVersionsIn(t, kubes["c1"]); after != before {
		t.Errorf("a refused uninstall changed Secrets: %s -> %s", before, after)
	}
	checkRelease(t, kubeconfig, 1, "")

	// --force: the local side forgets c2, the rest of the release goes.
	stops["c1"]() // the kubelet stops the pods of the deleted Deployment
	out, errOut, err := run(t, "uninstall", kc, "-n", "mesh-system", "--context", "c1", "--force")
	if err != nil {
		t.Fatalf("uninstall --force: %v\n%s", err, errOut)
	}
	t.Logf("uninstall --force:\n%s%s", out, errOut)
	for _, w := range []string{"warning: --force: removed the peers c2 from Secret mesh-system/clustermesh-peers", "cluster c2 still reads c1"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("uninstall --force stderr lacks %q:\n%s", w, errOut)
		}
	}
	for _, w := range []string{"uninstalled Helm release clustermesh (revision 1)", "DaemonSet/clustermesh-agent",
		"deleted Secret mesh-system/clustermesh-peers", "deleted CRD identities.clustermesh.io", "deleted CRD clustermeshnetworkpolicies.clustermesh.io",
		"deleted namespace mesh-system (install created it)"} {
		if !strings.Contains(out, w) {
			t.Errorf("uninstall --force output lacks %q:\n%s", w, out)
		}
	}
	checkGone(t, kubes["c1"], kubeconfig, "c1", manifest)

	// c2 still reads c1, as the warning said; its patch removes exactly
	// c1's entries.
	c2 := kubes["c2"].Client.CoreV1().Secrets("mesh-system")
	sec, err := c2.Get(t.Context(), mesh.PeersSecretName, metav1.GetOptions{})
	if err != nil || !slices.Equal(mesh.ConfiguredPeers(sec), []string{"c1"}) {
		t.Fatalf("c2's mesh Secret: %v %v, want peer c1 still there", err, sec)
	}
	_, _, err = run(t, "uninstall", kc, "-n", "mesh-system", "--context", "c2")
	if err == nil || !strings.Contains(err.Error(), "is connected to c1") {
		t.Fatalf("uninstall of c2, still reading c1: %v", err)
	}
	m := regexp.MustCompile(`--type=json -p '(\[.*\])'`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("no patch in the warning:\n%s", errOut)
	}
	var patch []map[string]string
	if err := json.Unmarshal([]byte(m[1]), &patch); err != nil {
		t.Fatalf("the printed patch %s: %v", m[1], err)
	}
	if _, err := c2.Patch(t.Context(), mesh.PeersSecretName, types.JSONPatchType, []byte(m[1]), metav1.PatchOptions{}); err != nil {
		t.Fatalf("apply the printed patch: %v", err)
	}
	if sec, _ = c2.Get(t.Context(), mesh.PeersSecretName, metav1.GetOptions{}); len(sec.Data) != 0 {
		t.Errorf("after the printed patch c2's mesh Secret holds %d keys, want none", len(sec.Data))
	}

	// A policy remains in c2: its CRD is kept, until the policy goes.
	pol := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "clustermesh.io/v1alpha1", "kind": "ClusterMeshNetworkPolicy",
		"metadata": map[string]any{"name": "keep-me", "namespace": "default"},
		"spec":     map[string]any{"endpointSelector": map[string]any{}},
	}}
	polRes := dynamic.NewForConfigOrDie(kubes["c2"].Config).Resource(cmnpResource).Namespace("default")
	if _, err := polRes.Create(t.Context(), pol, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	manifest = releaseObjects(t, kubeconfig, "c2")
	stops["c2"]()
	out = mustRun(t, "uninstall", kc, "-n", "mesh-system", "--context", "c2")
	if !strings.Contains(out, "kept CRD clustermeshnetworkpolicies.clustermesh.io: ClusterMeshNetworkPolicy objects remain (for one default/keep-me)") ||
		!strings.Contains(out, "deleted CRD identities.clustermesh.io") {
		t.Errorf("uninstall of c2 with a policy:\n%s", out)
	}
	if _, err := polRes.Get(t.Context(), "keep-me", metav1.GetOptions{}); err != nil {
		t.Errorf("the policy is gone: %v", err)
	}
	if err := polRes.Delete(t.Context(), "keep-me", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "uninstall", kc, "-n", "mesh-system", "--context", "c2")
	if strings.Contains(out, "Helm release") || !strings.Contains(out, "deleted CRD clustermeshnetworkpolicies.clustermesh.io") {
		t.Errorf("uninstall of c2 again:\n%s", out)
	}
	checkGone(t, kubes["c2"], kubeconfig, "c2", manifest)
	out = mustRun(t, "uninstall", kc, "-n", "mesh-system", "--context", "c2")
	if !strings.Contains(out, "nothing to uninstall in context \"c2\", namespace mesh-system") {
		t.Errorf("a third uninstall:\n%s", out)
	}
}

var (
	cmnpResource = schema.GroupVersionResource{Group: "clustermesh.io", Version: "v1alpha1", Resource: "clustermeshnetworkpolicies"}
	crdGVR       = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// releaseObjects are the objects of release clustermesh of the context,
// from its manifest, as helm get manifest prints them.
func releaseObjects(t *testing.T, kubeconfig, context string) []*unstructured.Unstructured {
	t.Helper()
	last, err := helmConfigOf(t, kubeconfig, context).Releases.Last(install.ReleaseName)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := install.Decode(last.(*releasev1.Release).Manifest)
	if err != nil || len(objs) < 10 {
		t.Fatalf("release manifest: %d objects, %v", len(objs), err)
	}
	return objs
}

// checkGone: no object of the manifest exists (or is being deleted), nor
// the release's history, the mesh Secret, the chart's CRDs; the namespace
// is deleted (it stays Terminating: no namespace controller runs here).
func checkGone(t *testing.T, kube *k8stest.Cluster, kubeconfig, context string, objs []*unstructured.Unstructured) {
	t.Helper()
	dc := discovery.NewDiscoveryClientForConfigOrDie(kube.Config)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn := dynamic.NewForConfigOrDie(kube.Config)
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		got, err := ri.Get(t.Context(), o.GetName(), metav1.GetOptions{})
		if err == nil && got.GetDeletionTimestamp() == nil {
			t.Errorf("%s: %s %s/%s remains after uninstall", context, gvk.Kind, o.GetNamespace(), o.GetName())
		} else if err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	}
	if _, err := helmConfigOf(t, kubeconfig, context).Releases.History(install.ReleaseName); !errors.Is(err, driver.ErrReleaseNotFound) {
		t.Errorf("%s: helm history clustermesh: %v, want no release", context, err)
	}
	crds := dyn.Resource(crdGVR)
	for _, name := range []string{"identities.clustermesh.io", "clustermeshnetworkpolicies.clustermesh.io", "clustermeshclusterwidenetworkpolicies.clustermesh.io"} {
		// The apiserver deletes the CRD's objects, then the CRD.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, err := crds.Get(t.Context(), name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: CRD %s: %v, want not found", context, name, err)
				break
			}
		}
	}
	ns, err := kube.Client.CoreV1().Namespaces().Get(t.Context(), "mesh-system", metav1.GetOptions{})
	if err == nil && ns.DeletionTimestamp == nil {
		t.Errorf("%s: namespace mesh-system not deleted", context)
	}
}

func secretVersionsIn(t *testing.T, kube *k8stest.Cluster) string {
	t.Helper()
	return secretVersions(t, kube.Client)
}
