package demo

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/internal/k8stest"
)

// kube is one running kube-apiserver (with its own etcd).
type kube struct {
	env    *envtest.Environment
	config *rest.Config
	client kubernetes.Interface
}

func startKube() (*kube, error) {
	dir := k8stest.AssetsDir()
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return nil, fmt.Errorf("%s is missing in %s: build it with `make envtest-bins`", bin, dir)
		}
	}
	crds, err := cmv1.CRDs()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{BinaryAssetsDirectory: dir, CRDs: crds, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver: %w", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &kube{env: env, config: cfg, client: cs}, nil
}

// writeKubeconfig writes a kubeconfig with one context per cluster.
func writeKubeconfig(path string, kubes map[string]*kube) error {
	configs := make(map[string]*rest.Config, len(kubes))
	for name, k := range kubes {
		configs[name] = k.config
	}
	return k8stest.WriteKubeconfig(path, configs, "cluster1")
}
