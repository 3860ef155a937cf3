// Package k8stest starts a real kube-apiserver (with its own etcd) for
// integration tests through controller-runtime's envtest, using binaries that
// hack/kube-binaries.sh builds from the Go module proxy, and installs the
// project's CRDs.
//
// Rules: a missing binary fails the test with the command that builds it;
// it never skips. Every server stops at test cleanup.
package k8stest

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
)

// Versions of the test bed, as built by hack/kube-binaries.sh.
const (
	KubeVersion = "1.37.1"
	EtcdVersion = "3.6.16"
)

// AssetsDir returns where the binaries are: $KUBEBUILDER_ASSETS, or the
// cache directory hack/kube-binaries.sh builds into.
func AssetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	cache := os.Getenv("CACHE_DIR")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "clustermesh")
	}
	return filepath.Join(cache, "envtest", "k8s-"+KubeVersion+"-etcd-"+EtcdVersion)
}

// Cluster is one running kube-apiserver.
type Cluster struct {
	Config *rest.Config
	Client kubernetes.Interface
	env    *envtest.Environment
}

// Option configures the kube-apiserver Start runs.
type Option func(*envtest.Environment)

// DualStack gives the kube-apiserver an IPv4 and an IPv6 Service CIDR
// (10.0.0.0/24, envtest's default, and fd00:10:96::/112), so that
// Services may be dual-stack or IPv6.
func DualStack() Option {
	return func(env *envtest.Environment) {
		env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/24,fd00:10:96::/112")
	}
}

// IPv6Only gives the kube-apiserver only an IPv6 Service CIDR
// (fd00:10:96::/112, DualStack's), so that every Service is IPv6. It
// advertises ::1 (it refuses to start with an advertised address of
// another family than its primary Service CIDR's) and so reconciles no
// endpoints of the kubernetes Service (it refuses a loopback address
// there); it still serves on 127.0.0.1.
func IPv6Only() Option {
	return func(env *envtest.Environment) {
		a := env.ControlPlane.GetAPIServer().Configure()
		a.Set("service-cluster-ip-range", "fd00:10:96::/112")
		a.Set("advertise-address", "::1")
		a.Set("endpoint-reconciler-type", "none")
	}
}

// Start starts a kube-apiserver with the project's CRDs installed.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	dir := AssetsDir()
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			t.Fatalf("test bed binary %s missing in %s: build it with `make envtest-bins` (hack/kube-binaries.sh): %v", bin, dir, err)
		}
	}
	crds, err := cmv1.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDs:                  crds,
		ErrorIfCRDPathMissing: true,
	}
	for _, o := range opts {
		o(env)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver from %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stop kube-apiserver: %v", err)
		}
	})
	cfg.QPS, cfg.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Cluster{Config: cfg, Client: cs, env: env}
}
