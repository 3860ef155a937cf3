package install_test

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	helmchart "helm.sh/helm/v4/pkg/chart/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	chart "github.com/clustermesh/clustermesh/charts/clustermesh"
	"github.com/clustermesh/clustermesh/cli/install"
	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func values() map[string]any {
	return map[string]any{
		"cluster":   map[string]any{"name": "c1", "id": 7, "podCIDRs": []any{"10.1.0.0/16", "fd00:1::/64"}},
		"apiserver": map[string]any{"etcdEndpoints": []any{"https://203.0.113.1:32379"}},
		"tls": map[string]any{
			"ca":     map[string]any{"cert": "CA-CERT", "key": "CA-KEY"},
			"server": map[string]any{"cert": "SERVER-CERT", "key": "SERVER-KEY"},
			"admin":  map[string]any{"cert": "ADMIN-CERT", "key": "ADMIN-KEY"},
			"local":  map[string]any{"cert": "LOCAL-CERT", "key": "LOCAL-KEY"},
		},
	}
}

// docs splits rendered manifests by kind/name.
func docs(t *testing.T, manifests string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for doc := range strings.SplitSeq(manifests, "\n---\n") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("rendered document does not parse: %v\n%s", err, doc)
		}
		if meta.Kind == "" {
			continue
		}
		out[meta.Kind+"/"+meta.Metadata.Name] = doc
	}
	return out
}

func decode[T any](t *testing.T, docs map[string]string, key string) *T {
	t.Helper()
	doc, ok := docs[key]
	if !ok {
		t.Fatalf("no %s rendered", key)
	}
	var v T
	if err := yaml.UnmarshalStrict([]byte(doc), &v); err != nil {
		t.Fatalf("%s does not decode strictly: %v\n%s", key, err, doc)
	}
	return &v
}

func load(t *testing.T) *helmchart.Chart {
	t.Helper()
	c, err := chart.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRender renders the chart through Helm's SDK, as `helm template`
// would.
func TestRender(t *testing.T) {
	out, err := install.Render(t.Context(), load(t), "mesh-system", values())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "rendered.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if d := cmp.Diff(string(want), out); d != "" {
		t.Errorf("rendered chart (-want +got):\n%s", d)
	}

	d := docs(t, out)
	var kinds []string
	for k := range d {
		if !strings.HasPrefix(k, "CustomResourceDefinition/") {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds)
	if diff := cmp.Diff([]string{
		"ClusterRole/clustermesh-agent", "ClusterRole/clustermesh-apiserver",
		"ClusterRoleBinding/clustermesh-agent", "ClusterRoleBinding/clustermesh-apiserver",
		"ConfigMap/clustermesh-config",
		"DaemonSet/clustermesh-agent", "Deployment/clustermesh-apiserver",
		"Role/clustermesh-apiserver", "RoleBinding/clustermesh-apiserver",
		"Secret/clustermesh-apiserver-admin-cert", "Secret/clustermesh-apiserver-server-cert",
		"Secret/clustermesh-etcd-ca", "Secret/clustermesh-local-cert", "Secret/clustermesh-peers",
		"Service/clustermesh-apiserver", "ServiceAccount/clustermesh-agent", "ServiceAccount/clustermesh-apiserver",
	}, kinds); diff != "" {
		t.Errorf("rendered objects (-want +got):\n%s", diff)
	}

	// The chart's CRDs are the API group's, all of them.
	crds, err := cmv1.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range crds {
		got := decode[apiextensionsv1.CustomResourceDefinition](t, d, "CustomResourceDefinition/"+want.Name)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("chart CRD %s differs from apis/clustermesh/v1alpha1/crds (-api +chart):\n%s", want.Name, diff)
		}
	}
	var chartCRDs int
	for k := range d {
		if strings.HasPrefix(k, "CustomResourceDefinition/") {
			chartCRDs++
		}
	}
	if chartCRDs != len(crds) {
		t.Errorf("the chart has %d CRDs, the API group %d: copy apis/clustermesh/v1alpha1/crds/*.yaml into charts/clustermesh/crds/", chartCRDs, len(crds))
	}

	cm := decode[corev1.ConfigMap](t, d, "ConfigMap/clustermesh-config")
	if diff := cmp.Diff(map[string]string{
		mesh.KeyClusterName: "c1", mesh.KeyClusterID: "7", mesh.KeyMaxConnectedClusters: "255",
		mesh.KeyPodCIDRs: "10.1.0.0/16,fd00:1::/64", mesh.KeyEtcdEndpoints: "https://203.0.113.1:32379",
		mesh.KeyMeshConfigDir: mesh.DefaultMeshConfigDir, mesh.KeyKVStoreRoot: "cilium", mesh.KeyCache: "true",
	}, cm.Data); diff != "" {
		t.Errorf("ConfigMap (-want +got):\n%s", diff)
	}
	if cm.Namespace != "mesh-system" {
		t.Errorf("ConfigMap namespace %q", cm.Namespace)
	}
	for name, want := range map[string]map[string]string{
		mesh.CASecretName:     {mesh.CACertKey: "CA-CERT", mesh.CAKeyKey: "CA-KEY"},
		mesh.ServerSecretName: {mesh.CACertKey: "CA-CERT", mesh.TLSCertKey: "SERVER-CERT", mesh.TLSKeyKey: "SERVER-KEY"},
		mesh.AdminSecretName:  {mesh.CACertKey: "CA-CERT", mesh.TLSCertKey: "ADMIN-CERT", mesh.TLSKeyKey: "ADMIN-KEY"},
	} {
		s := decode[corev1.Secret](t, d, "Secret/"+name)
		got := map[string]string{}
		for k, v := range s.Data {
			got[k] = string(v)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Secret %s (-want +got):\n%s", name, diff)
		}
	}
	if s := decode[corev1.Secret](t, d, "Secret/"+mesh.PeersSecretName); s.Data != nil {
		t.Errorf("the chart sets the mesh Secret's data (upgrades would drop the peers): %v", s.Data)
	}

	// Workloads: every flag exists in the binary's main.
	dep := decode[appsv1.Deployment](t, d, "Deployment/clustermesh-apiserver")
	checkFlags(t, "clustermesh-apiserver", dep.Spec.Template.Spec.Containers[0].Args)
	if dep.Spec.Template.Spec.ServiceAccountName != "clustermesh-apiserver" {
		t.Error("apiserver service account")
	}
	ds := decode[appsv1.DaemonSet](t, d, "DaemonSet/clustermesh-agent")
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork || len(pod.Containers) != 2 {
		t.Fatalf("agent pod: hostNetwork %v, %d containers", pod.HostNetwork, len(pod.Containers))
	}
	agent, sidecar := pod.Containers[0], pod.Containers[1]
	if agent.Name != mesh.AgentContainer {
		t.Errorf("agent container %q", agent.Name)
	}
	checkFlags(t, "clustermesh-agent", agent.Args)
	for _, want := range []string{"--cluster-name=c1", "--cluster-id=7", "--mesh-config-dir=" + mesh.DefaultMeshConfigDir,
		"--api-socket=" + mesh.AgentSocket} {
		if !slices.Contains(agent.Args, want) {
			t.Errorf("agent args lack %s: %v", want, agent.Args)
		}
	}
	if !slices.Contains(sidecar.Args, "--serve=$(POD_IP):9890") || !slices.Contains(sidecar.Args, "--api-socket="+mesh.AgentSocket) {
		t.Errorf("status sidecar args: %v", sidecar.Args)
	}
	var peers bool
	for _, v := range pod.Volumes {
		peers = peers || (v.Secret != nil && v.Secret.SecretName == mesh.PeersSecretName)
	}
	if !peers {
		t.Error("the agents do not mount the mesh Secret")
	}
	cr := decode[rbacv1.ClusterRole](t, d, "ClusterRole/clustermesh-apiserver")
	if len(cr.Rules) == 0 {
		t.Error("empty apiserver ClusterRole")
	}
	svc := decode[corev1.Service](t, d, "Service/clustermesh-apiserver")
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.Ports[0].NodePort != 32379 {
		t.Errorf("service: %+v", svc.Spec)
	}
}

// checkFlags fails for an argument naming a flag the binary's main does
// not define (the chart and the binaries must not drift apart).
func checkFlags(t *testing.T, binary string, args []string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "cmd", binary, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^--([a-z0-9-]+)`)
	for _, a := range args {
		m := re.FindStringSubmatch(a)
		if m == nil {
			t.Errorf("%s argument %q is not a --flag", binary, a)
			continue
		}
		if !strings.Contains(string(src), `"`+m[1]+`"`) {
			t.Errorf("%s has no flag --%s (argument %q)", binary, m[1], a)
		}
	}
}

func TestRenderRequiredValues(t *testing.T) {
	for _, tc := range []struct {
		drop func(map[string]any)
		want string
	}{
		{func(v map[string]any) { v["cluster"].(map[string]any)["name"] = "" }, "cluster.name is required"},
		{func(v map[string]any) { delete(v["cluster"].(map[string]any), "id") }, "cluster.id is required"},
		{func(v map[string]any) { v["cluster"].(map[string]any)["podCIDRs"] = []any{} }, "cluster.podCIDRs is required"},
		{func(v map[string]any) { delete(v, "apiserver") }, "apiserver.etcdEndpoints is required"},
		{func(v map[string]any) { v["tls"].(map[string]any)["ca"] = map[string]any{} }, "tls.ca.cert is required"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			v := values()
			tc.drop(v)
			_, err := install.Render(t.Context(), load(t), "x", v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRenderSchema: a wrong value fails, before anything is rendered, with
// a message naming it.
func TestRenderSchema(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(map[string]any)
		want   []string
	}{
		{"cluster id out of range", func(v map[string]any) { v["cluster"].(map[string]any)["id"] = 600 }, []string{"/cluster/id", "511"}},
		{"cluster id a string", func(v map[string]any) { v["cluster"].(map[string]any)["id"] = "seven" }, []string{"/cluster/id", "string"}},
		{"cluster name", func(v map[string]any) { v["cluster"].(map[string]any)["name"] = "C_1" }, []string{"/cluster/name"}},
		{"max clusters", func(v map[string]any) { v["cluster"].(map[string]any)["maxConnectedClusters"] = 256 }, []string{"/cluster/maxConnectedClusters"}},
		{"endpoint", func(v map[string]any) {
			v["apiserver"].(map[string]any)["etcdEndpoints"] = []any{"http://203.0.113.1:32379"}
		}, []string{"/apiserver/etcdEndpoints/0"}},
		{"service type", func(v map[string]any) {
			v["apiserver"].(map[string]any)["service"] = map[string]any{"type": "External"}
		}, []string{"/apiserver/service/type"}},
		{"a misspelt value", func(v map[string]any) { v["cluster"].(map[string]any)["podCIDR"] = []any{"10.1.0.0/16"} }, []string{"podCIDR"}},
		{"pull policy", func(v map[string]any) { v["image"] = map[string]any{"pullPolicy": "Sometimes"} }, []string{"/image/pullPolicy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := values()
			tc.change(v)
			_, err := install.Render(t.Context(), load(t), "x", v)
			if err == nil {
				t.Fatal("rendered")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

// TestServerDryRun applies the chart rendered with the required values
// and with each documented option to a real kube-apiserver with
// server-side dry-run: every object is valid against the real API.
func TestServerDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a kube-apiserver")
	}
	kube := k8stest.Start(t)
	if _, err := kube.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "mesh-system"}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	set := func(path string, v any) func(map[string]any) {
		return func(m map[string]any) {
			keys := strings.Split(path, ".")
			for _, k := range keys[:len(keys)-1] {
				next, ok := m[k].(map[string]any)
				if !ok {
					next = map[string]any{}
					m[k] = next
				}
				m = next
			}
			m[keys[len(keys)-1]] = v
		}
	}
	resources := map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}, "limits": map[string]any{"memory": "1Gi"}}
	for _, tc := range []struct {
		name    string
		changes []func(map[string]any)
	}{
		{"required values", nil},
		{"511 clusters, dual-stack", []func(map[string]any){set("cluster.maxConnectedClusters", 511), set("cluster.id", 300),
			set("cluster.podCIDRs", []any{"10.1.0.0/16", "fd00:1::/64"})}},
		{"kvstoreRoot", []func(map[string]any){set("kvstoreRoot", "mesh")}},
		{"image", []func(map[string]any){set("image.repository", "registry.example:5000/clustermesh"), set("image.tag", "v9.9.9"),
			set("image.pullPolicy", "Always")}},
		{"LoadBalancer", []func(map[string]any){set("apiserver.service.type", "LoadBalancer")}},
		{"ClusterIP", []func(map[string]any){set("apiserver.service.type", "ClusterIP")}},
		{"nodePort", []func(map[string]any){set("apiserver.service.nodePort", 31000)}},
		{"resources", []func(map[string]any){set("apiserver.resources", resources), set("agent.resources", resources)}},
		{"agent paths and port", []func(map[string]any){set("agent.meshConfigDir", "/etc/clustermesh/peers"),
			set("agent.socketDir", "/run/clustermesh"), set("agent.statusPort", 9999), set("agent.cgroupRoot", "/sys/fs/cgroup/unified")}},
		{"flows", []func(map[string]any){set("agent.flowsCapacity", 100000), set("agent.flowsAllowedSample", -1)}},
		{"no CNI install", []func(map[string]any){set("cni.install", false)}},
		{"CNI bin dir", []func(map[string]any){set("cni.binDir", "/home/kubernetes/bin")}},
		{"cache off", []func(map[string]any){set("apiserver.cache.enabled", false), set("tls.local", map[string]any{})}},
		{"cache TTL", []func(map[string]any){set("apiserver.cache.ttl", "10m")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := values()
			for _, c := range tc.changes {
				c(v)
			}
			out, err := install.Render(t.Context(), load(t), "mesh-system", v)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := install.Decode(out)
			if err != nil {
				t.Fatal(err)
			}
			done, err := install.Apply(t.Context(), kube.Config, objs, true)
			if err != nil {
				t.Fatalf("server-side dry-run: %v (accepted before: %v)", err, done)
			}
			if len(done) != len(objs) {
				t.Errorf("%d of %d objects applied", len(done), len(objs))
			}
		})
	}
	// Nothing was persisted.
	if _, err := kube.Client.AppsV1().DaemonSets("mesh-system").Get(t.Context(), mesh.AgentName, metav1.GetOptions{}); err == nil {
		t.Error("the dry-run created the DaemonSet")
	}
}
