//go:build linux

package bed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/internal/pki"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/kvstore"
)

// ClusterSpec describes a cluster to add.
type ClusterSpec struct {
	Name  string
	ID    uint32 // 1..9 (it also numbers the underlay addresses)
	Nodes int    // default 2
	// AgentArgs are added to the command line of the cluster's agents
	// (for example --policy-default-local-cluster=false).
	AgentArgs []string
}

// Cluster is one cluster of the bed.
type Cluster struct {
	b      *Bed
	Name   string
	ID     uint32
	Config *rest.Config
	Client kubernetes.Interface
	Nodes  []*Node

	agentArgs  []string // ClusterSpec.AgentArgs
	env        *envtest.Environment
	dir        string
	kubeconfig string // this cluster only (controller manager, apiserver, agents)
	kubePort   int
	etcdPort   int
	healthAddr string
	kcm        *proc
	apiserver  *proc
	// apiCgroup is the clustermesh-apiserver's cgroup v2 directory (under
	// the bed's), which Partition matches its packets by.
	apiCgroup string
	// cacheConfig is the agents' etcd config of the clustermesh-apiserver's
	// cache of remote state ("" with Options.DirectPeers).
	cacheConfig string
}

// PodCIDR is the cluster's primary pod CIDR: the IPv4 one,
// 10.<id>.0.0/16 (node i, 0-based, has 10.<id>.<i+1>.0/24), or in an
// IPv6-only bed fd00:10:<id>::/48.
func (c *Cluster) PodCIDR() netip.Prefix { return clusterPodCIDRs(c.ID, c.b.fam)[0] }

// PodCIDRs are the cluster's pod CIDRs: the IPv4 one, then in a
// dual-stack or IPv6-only bed fd00:10:<id>::/48 (node i has
// fd00:10:<id>:<i+1>::/64).
func (c *Cluster) PodCIDRs() []netip.Prefix { return clusterPodCIDRs(c.ID, c.b.fam) }

func (c *Cluster) meshDir() string { return filepath.Join(c.dir, "peers") }

// EtcdURL is where the cluster's clustermesh-apiserver serves its etcd.
func (c *Cluster) EtcdURL() string { return "https://127.0.0.1:" + strconv.Itoa(c.etcdPort) }

// AddCluster starts a cluster's control plane, installs clustermesh into
// it, runs its clustermesh-apiserver and its nodes with their agents.
func (b *Bed) AddCluster(ctx context.Context, spec ClusterSpec) (*Cluster, error) {
	if spec.Nodes == 0 {
		spec.Nodes = 2
	}
	if spec.ID == 0 || spec.ID > 9 || spec.Nodes > 9 {
		return nil, fmt.Errorf("cluster %s: the bed numbers clusters 1..9 with at most 9 nodes each", spec.Name)
	}
	c := &Cluster{b: b, Name: spec.Name, ID: spec.ID, dir: filepath.Join(b.dir, spec.Name), agentArgs: spec.AgentArgs}
	if err := os.MkdirAll(c.meshDir(), 0o700); err != nil {
		return nil, err
	}
	b.logf("==> cluster %s (ID %d): kube-apiserver", c.Name, c.ID)
	if err := c.startKube(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.clusters = append(b.clusters, c)
	b.mu.Unlock()
	if err := b.writeKubeconfig(); err != nil {
		return nil, err
	}
	b.logf("    kube-controller-manager (EndpointSlice, namespace, garbage-collector controllers)")
	c.kcm = b.newProc(c.Name+"/kube-controller-manager", "", "", filepath.Join(k8stest.AssetsDir(), "kube-controller-manager"),
		"--kubeconfig="+c.kubeconfig, "--controllers=endpointslice,namespace,garbagecollector", "--leader-elect=false",
		"--secure-port=0", "--concurrent-service-endpoint-syncs=10", "--v=1")
	if err := b.start(c.kcm); err != nil {
		return nil, err
	}
	for i := range spec.Nodes {
		if err := c.registerNode(ctx, i); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c.etcdPort = port
	b.logf("    clustermesh install")
	if _, err := b.CLI(ctx, "install", "--context", c.Name, "--cluster-name", c.Name, "--cluster-id", strconv.Itoa(int(c.ID)),
		"--pod-cidrs", joinPrefixes(c.PodCIDRs()), "--etcd-endpoints", c.EtcdURL()); err != nil {
		return nil, err
	}
	if err := c.runAPIServer(ctx); err != nil {
		return nil, err
	}
	// Every node of every cluster reaches this etcd; this cluster's nodes
	// reach every etcd.
	for _, o := range b.Clusters() {
		for _, n := range o.Nodes {
			if err := n.fwd.add(n.netns, c.etcdPort); err != nil {
				return nil, err
			}
		}
	}
	for i := range spec.Nodes {
		n, err := c.startNode(ctx, i)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	return c, nil
}

func (c *Cluster) startKube() error {
	dir := k8stest.AssetsDir()
	for _, bin := range []string{"kube-apiserver", "kube-controller-manager", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return fmt.Errorf("%s is missing in %s: build it with `make envtest-bins` (hack/kube-binaries.sh)", bin, dir)
		}
	}
	crds, err := cmv1.CRDs()
	if err != nil {
		return err
	}
	c.env = &envtest.Environment{BinaryAssetsDirectory: dir, CRDs: crds, ErrorIfCRDPathMissing: true}
	switch c.b.fam {
	case FamilyDualStack:
		k8stest.DualStack()(c.env) // an IPv4 and an IPv6 Service CIDR
	case FamilyIPv6:
		k8stest.IPv6Only()(c.env) // an IPv6 Service CIDR only
	}
	cfg, err := c.env.Start()
	if err != nil {
		return fmt.Errorf("cluster %s: start kube-apiserver: %w", c.Name, err)
	}
	c.b.onClose(c.env.Stop)
	// envtest's processes get no parent-death signal: the ledger names
	// their directories, so that a later bed kills what a killed one left.
	if cp := c.env.ControlPlane; cp.Etcd != nil && cp.APIServer != nil {
		c.b.record("procs", cp.Etcd.DataDir)
		c.b.record("procs", cp.APIServer.CertDir)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	c.Config = cfg
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	u, err := url.Parse(cfg.Host)
	if err == nil {
		c.kubePort, err = strconv.Atoi(u.Port())
	}
	if err != nil {
		return fmt.Errorf("kube-apiserver address %q: want https://127.0.0.1:<port>: %w", cfg.Host, err)
	}
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	return k8stest.WriteKubeconfig(c.kubeconfig, map[string]*rest.Config{c.Name: cfg}, c.Name)
}

// Kubeconfig is the bed's kubeconfig: one context per cluster, named after
// it.
func (b *Bed) Kubeconfig() string { return filepath.Join(b.dir, "kubeconfig") }

func (b *Bed) writeKubeconfig() error {
	configs := map[string]*rest.Config{}
	current := ""
	for _, c := range b.Clusters() {
		configs[c.Name] = c.Config
		if current == "" {
			current = c.Name
		}
	}
	return k8stest.WriteKubeconfig(b.Kubeconfig(), configs, current)
}

// CLI runs the clustermesh binary with the bed's kubeconfig and returns
// its output; a failure carries the output.
func (b *Bed) CLI(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, b.bin("clustermesh"), append([]string{"--kubeconfig", b.Kubeconfig()}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	b.logf("    $ clustermesh %s", strings.Join(args, " "))
	if s := strings.TrimRight(out.String(), "\n"); s != "" {
		fmt.Fprintf(b.out, "        %s\n", strings.ReplaceAll(s, "\n", "\n        "))
	}
	if err != nil {
		return out.String(), fmt.Errorf("clustermesh %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// runAPIServer runs the clustermesh-apiserver binary as the chart's
// Deployment does (certificates from the installed Secrets, embedded
// etcd) and reports the Deployment ready once it is.
func (c *Cluster) runAPIServer(ctx context.Context) error {
	files := map[string]string{}
	for _, f := range [][2]string{{mesh.ServerSecretName, mesh.TLSCertKey}, {mesh.ServerSecretName, mesh.TLSKeyKey},
		{mesh.ServerSecretName, mesh.CACertKey}, {mesh.AdminSecretName, mesh.TLSCertKey}, {mesh.AdminSecretName, mesh.TLSKeyKey}} {
		s, err := c.Client.CoreV1().Secrets(mesh.DefaultNamespace).Get(ctx, f[0], metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("cluster %s: read the installed Secret %s: %w", c.Name, f[0], err)
		}
		p := filepath.Join(c.dir, f[0]+"-"+f[1])
		if err := os.WriteFile(p, s.Data[f[1]], 0o600); err != nil {
			return err
		}
		files[f[0]+"/"+f[1]] = p
	}
	// Agents are processes of the bed: their mesh directory is the
	// cluster's directory, not the chart's mount path.
	cms := c.Client.CoreV1().ConfigMaps(mesh.DefaultNamespace)
	cm, err := cms.Get(ctx, mesh.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cm.Data[mesh.KeyMeshConfigDir] = c.meshDir()
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return err
	}
	hp, err := freePort()
	if err != nil {
		return err
	}
	c.healthAddr = "127.0.0.1:" + strconv.Itoa(hp)
	// The cache of remote state reads the same mesh directory as the
	// agents would; the agents read the peers from it with the local
	// user (its certificate from the installed CA, as the chart would mount).
	cacheArgs := []string{"--cache=false"}
	if !c.b.direct {
		// A probe every 2 s: a cut (Partition) shows in status within
		// 4-6 s, and a loaded machine's etcd is not taken for one.
		cacheArgs = []string{"--cache", "--mesh-config-dir=" + c.meshDir(), "--peer-probe-interval=2s"}
		if err := c.writeCacheConfig(ctx); err != nil {
			return err
		}
	}
	args := append([]string{c.b.bin("clustermesh-apiserver"),
		"--cluster-name=" + c.Name, "--cluster-id=" + strconv.Itoa(int(c.ID)), "--kubeconfig=" + c.kubeconfig,
		"--etcd-data-dir=" + filepath.Join(c.dir, "etcd"), "--etcd-listen-client-urls=" + c.EtcdURL(),
		"--tls-cert-file=" + files[mesh.ServerSecretName+"/"+mesh.TLSCertKey], "--tls-key-file=" + files[mesh.ServerSecretName+"/"+mesh.TLSKeyKey],
		"--tls-ca-file=" + files[mesh.ServerSecretName+"/"+mesh.CACertKey],
		"--admin-cert-file=" + files[mesh.AdminSecretName+"/"+mesh.TLSCertKey], "--admin-key-file=" + files[mesh.AdminSecretName+"/"+mesh.TLSKeyKey],
		"--heartbeat-interval=1s", "--metrics-addr=", "--health-addr=" + c.healthAddr}, cacheArgs...)
	// Its own cgroup: Partition cuts its connections to the peers' etcd
	// and nothing else on the host's loopback.
	c.apiCgroup = filepath.Join(c.b.cgroupRoot, c.Name+"-clustermesh-apiserver")
	if err := os.Mkdir(c.apiCgroup, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("cluster %s: the clustermesh-apiserver's cgroup: %w", c.Name, err)
	}
	c.apiserver = c.b.newProc(c.Name+"/clustermesh-apiserver", "", c.apiCgroup, args...)
	return c.StartAPIServer(ctx)
}

// writeCacheConfig writes the agents' etcd config of the cache: the
// cluster's etcd, logged into as the local user with a certificate of the
// cluster's CA.
func (c *Cluster) writeCacheConfig(ctx context.Context) error {
	s, err := c.Client.CoreV1().Secrets(mesh.DefaultNamespace).Get(ctx, mesh.CASecretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("cluster %s: read the installed Secret %s: %w", c.Name, mesh.CASecretName, err)
	}
	ca, err := mesh.ParseCA(s.Data[mesh.CACertKey], s.Data[mesh.CAKeyKey])
	if err != nil {
		return fmt.Errorf("cluster %s: Secret %s: %w", c.Name, mesh.CASecretName, err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: kvstore.LocalUser, Client: true})
	if err != nil {
		return err
	}
	dir := filepath.Join(c.dir, "cache")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfg := kvstore.ClientConfig{Endpoints: []string{c.EtcdURL()}}
	if cfg.CertFile, cfg.KeyFile, err = leaf.WriteFiles(dir, kvstore.LocalUser); err != nil {
		return err
	}
	cfg.TrustedCAFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(cfg.TrustedCAFile, s.Data[mesh.CACertKey], 0o600); err != nil {
		return err
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	c.cacheConfig = filepath.Join(dir, "etcd.yaml")
	return os.WriteFile(c.cacheConfig, b, 0o600)
}

// StartAPIServer (re)starts the clustermesh-apiserver and waits until it
// is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.b.logf("    clustermesh-apiserver of %s (embedded etcd at %s)", c.Name, c.EtcdURL())
	if err := c.b.start(c.apiserver); err != nil {
		return err
	}
	if err := c.b.waitUntil(ctx, 2*time.Minute, "clustermesh-apiserver of "+c.Name+" ready (etcd serving, export synced)", func(ctx context.Context) (bool, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.healthAddr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	}, c.apiserver, c.kcm); err != nil {
		return err
	}
	deps := c.Client.AppsV1().Deployments(mesh.DefaultNamespace)
	d, err := deps.Get(ctx, mesh.APIServerName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("cluster %s: the installed Deployment %s: %w", c.Name, mesh.APIServerName, err)
	}
	d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, 1, 1
	if _, err := deps.UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("cluster %s: report the Deployment ready: %w", c.Name, err)
	}
	return nil
}

// KillAPIServer kills the clustermesh-apiserver (and its embedded etcd)
// with SIGKILL.
func (c *Cluster) KillAPIServer() error {
	c.b.logf("    kill -9 clustermesh-apiserver of %s", c.Name)
	return c.apiserver.kill9()
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// freePort returns a port of 127.0.0.1 free now for a process the bed
// starts. It is below the kernel's ephemeral range (32768 and up by
// default): a port the kernel handed out for ":0" and closed again (the
// usual trick) can be taken by any outgoing connection of any test running
// meanwhile, before the process binds it ("address already in use" seen in
// CI). Ports handed out by this process are not handed out twice.
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use
		}
		_ = l.Close()
		portsGiven[port] = true
		return port, nil
	}
	return 0, errors.New("no free port of 127.0.0.1 between 20000 and 32000 after 200 tries")
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)
