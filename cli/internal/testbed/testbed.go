// Package testbed starts clusters for the CLI's tests: per cluster a real
// kube-apiserver (envtest) with the mesh settings the chart installs
// (ConfigMap, CA, admin and peers Secrets), a real etcd with TLS and RBAC
// written as its clustermesh-apiserver would, and one kubeconfig with a
// context per cluster.
package testbed

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/internal/pki"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
)

// Spec describes one cluster.
type Spec struct {
	Name    string
	ID      uint32
	PodCIDR string
	// MaxConnected defaults to 255.
	MaxConnected uint32
}

// Cluster is one running cluster.
type Cluster struct {
	Spec
	Context string
	Kube    *k8stest.Cluster
	// Etcd is the cluster's etcd with its exporters (meshtest.Peer).
	Etcd *meshtest.Peer
	// MeshDir is where the tests materialize the mesh Secret, as the
	// kubelet mounts it into the agents.
	MeshDir string
}

// Bed is the running clusters and their kubeconfig.
type Bed struct {
	Clusters   []*Cluster
	Kubeconfig string
}

// Namespace of the mesh components in the test bed.
const Namespace = mesh.DefaultNamespace

// Start starts one cluster per spec.
func Start(t *testing.T, specs ...Spec) *Bed {
	t.Helper()
	b := &Bed{}
	kubes := map[string]*k8stest.Cluster{}
	var contexts []string
	for _, s := range specs {
		if s.MaxConnected == 0 {
			s.MaxConnected = 255
		}
		c := &Cluster{Spec: s, Context: "kind-" + s.Name, Kube: k8stest.Start(t), Etcd: meshtest.StartPeer(t, s.Name, s.ID)}
		c.Etcd.Synced()
		c.MeshDir = t.TempDir()
		install(t, c)
		kubes[c.Context] = c.Kube
		contexts = append(contexts, c.Context)
		b.Clusters = append(b.Clusters, c)
	}
	b.Kubeconfig = Kubeconfig(t, kubes, contexts[0])
	return b
}

// Kubeconfig writes a kubeconfig with one context per cluster (named by
// the map's keys) and returns its path.
func Kubeconfig(t *testing.T, clusters map[string]*k8stest.Cluster, current string) string {
	t.Helper()
	configs := make(map[string]*rest.Config, len(clusters))
	for name, k := range clusters {
		configs[name] = k.Config
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := k8stest.WriteKubeconfig(path, configs, current); err != nil {
		t.Fatal(err)
	}
	return path
}

// install creates what `clustermesh install` would for the CLI to work.
func install(t *testing.T, c *Cluster) {
	t.Helper()
	ctx := t.Context()
	kube := c.Kube.Client
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	env := c.Etcd.Env
	caKey, err := env.CA.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	admin := issue(t, env.CA, kvstore.AdminUser)
	objs := []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: mesh.CASecretName}, Data: map[string][]byte{mesh.CACertKey: env.CA.CertPEM(), mesh.CAKeyKey: caKey}},
		{ObjectMeta: metav1.ObjectMeta{Name: mesh.AdminSecretName}, Data: map[string][]byte{
			mesh.TLSCertKey: admin[0], mesh.TLSKeyKey: admin[1], mesh.CACertKey: env.CA.CertPEM()}},
		{ObjectMeta: metav1.ObjectMeta{Name: mesh.PeersSecretName}},
	}
	for _, s := range objs {
		if _, err := kube.CoreV1().Secrets(Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kube.CoreV1().ConfigMaps(Namespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: mesh.ConfigMapName},
		Data: map[string]string{
			mesh.KeyClusterName: c.Name, mesh.KeyClusterID: strconv.FormatUint(uint64(c.ID), 10),
			mesh.KeyMaxConnectedClusters: strconv.FormatUint(uint64(c.MaxConnected), 10),
			mesh.KeyPodCIDRs:             c.PodCIDR, mesh.KeyEtcdEndpoints: env.URL, mesh.KeyMeshConfigDir: c.MeshDir,
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func issue(t *testing.T, ca *pki.CA, user string) [2][]byte {
	t.Helper()
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: user, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	key, err := leaf.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return [2][]byte{leaf.CertPEM(), key}
}

// Cluster returns the mesh.Cluster of c through client kube (nil: the
// test bed's client).
func (c *Cluster) Cluster(kube kubernetes.Interface) *mesh.Cluster {
	if kube == nil {
		kube = c.Kube.Client
	}
	return &mesh.Cluster{Context: c.Context, Namespace: Namespace, Kube: kube}
}

// ClientWith returns a client of c whose transport is wrapped (fault
// injection).
func (c *Cluster) ClientWith(t *testing.T, wrap func(rt httpRoundTripper) httpRoundTripper) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(c.Kube.Config)
	cfg.Wrap(func(rt httpRoundTripper) httpRoundTripper { return wrap(rt) })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// PeersSecret returns the mesh Secret's content.
func (c *Cluster) PeersSecret(t *testing.T) map[string][]byte {
	t.Helper()
	s, err := c.Kube.Client.CoreV1().Secrets(Namespace).Get(t.Context(), mesh.PeersSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data
}

// SyncMeshDir writes the mesh Secret into MeshDir as the kubelet updates a
// Secret volume: every key a file, files of removed keys deleted.
func (c *Cluster) SyncMeshDir(t *testing.T) {
	t.Helper()
	data := c.PeersSecret(t)
	entries, err := os.ReadDir(c.MeshDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := data[e.Name()]; !ok {
			if err := os.Remove(filepath.Join(c.MeshDir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Certificates first, configs last: an agent never sees a config
	// whose files are missing.
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return strings.Compare(strconv.FormatBool(!strings.Contains(a, "."))+a, strconv.FormatBool(!strings.Contains(b, "."))+b)
	})
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join(c.MeshDir, k), data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// SetAPIServerReady creates the clustermesh-apiserver Deployment with
// ready replicas, as its controller would report them.
func (c *Cluster) SetAPIServerReady(t *testing.T, replicas int32) {
	t.Helper()
	labels := map[string]string{mesh.NameLabel: mesh.APIServerName}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: mesh.APIServerName, Namespace: Namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "apiserver", Image: "clustermesh:test"}}},
			},
		},
	}
	api := c.Kube.Client.AppsV1().Deployments(Namespace)
	d, err := api.Create(t.Context(), d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = replicas, replicas, replicas
	if _, err := api.UpdateStatus(t.Context(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
