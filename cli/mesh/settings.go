package mesh

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/pki"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Cluster is one Kubernetes cluster as the CLI reaches it.
type Cluster struct {
	// Context is the kubeconfig context, named in messages.
	Context string
	// Namespace holds the chart's objects.
	Namespace string
	Kube      kubernetes.Interface
}

func (c *Cluster) String() string {
	if c.Context == "" {
		return "the current context"
	}
	return "context " + strconv.Quote(c.Context)
}

// Settings are a cluster's mesh settings, read from its ConfigMap and
// Secrets.
type Settings struct {
	Cluster              *Cluster
	Name                 string
	ID                   uint32
	MaxConnectedClusters uint32
	PodCIDRs             []netip.Prefix
	Endpoints            []string
	MeshConfigDir        string
	Paths                schema.Paths
	// Cache: the cluster's clustermesh-apiserver caches the peers and its
	// agents read them there (KeyCache, default true); otherwise each
	// agent reads every peer at the peer's etcd.
	Cache bool

	// CA signs the etcd server, admin and peer client certificates.
	CA    *pki.CA
	CAPEM []byte
	// admin is the admin client certificate and key (PEM).
	adminCert, adminKey []byte
}

// where names the ConfigMap for messages.
func (s *Settings) where() string {
	return fmt.Sprintf("ConfigMap %s/%s in %s", s.Cluster.Namespace, ConfigMapName, s.Cluster)
}

// Load reads and validates a cluster's mesh settings.
func Load(ctx context.Context, c *Cluster) (*Settings, error) {
	s := &Settings{Cluster: c}
	cm, err := c.Kube.CoreV1().ConfigMaps(c.Namespace).Get(ctx, ConfigMapName, metav1.GetOptions{})
	if err != nil {
		return nil, notInstalled(c, "ConfigMap", ConfigMapName, err)
	}
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("key %s: %s", key, fmt.Sprintf(format, a...)))
	}
	d := cm.Data
	s.Name = d[KeyClusterName]
	if err := identity.ValidateClusterName(s.Name); err != nil {
		bad(KeyClusterName, "%v", err)
	}
	s.MaxConnectedClusters = 255
	if v := d[KeyMaxConnectedClusters]; v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			bad(KeyMaxConnectedClusters, "%q is not a number: set 255 or 511", v)
		}
		s.MaxConnectedClusters = uint32(n)
	}
	layout, layoutErr := identity.NewLayout(s.MaxConnectedClusters)
	if layoutErr != nil {
		bad(KeyMaxConnectedClusters, "%v", layoutErr)
	}
	if id, err := strconv.ParseUint(d[KeyClusterID], 10, 32); err != nil {
		bad(KeyClusterID, "%q is not a number: set the cluster's ID (1..%d)", d[KeyClusterID], s.MaxConnectedClusters)
	} else {
		s.ID = uint32(id)
		if layoutErr == nil {
			if err := layout.ValidateClusterID(identity.ClusterID(s.ID)); err != nil {
				bad(KeyClusterID, "%v", err)
			}
		}
	}
	for _, f := range splitList(d[KeyPodCIDRs]) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			bad(KeyPodCIDRs, "%q is not a CIDR like 10.1.0.0/16", f)
			continue
		}
		s.PodCIDRs = append(s.PodCIDRs, p.Masked())
	}
	if len(s.PodCIDRs) == 0 && d[KeyPodCIDRs] == "" {
		bad(KeyPodCIDRs, "empty: set the cluster's pod CIDRs (comma-separated), they must not overlap with any peer's")
	}
	s.Endpoints = splitList(d[KeyEtcdEndpoints])
	if len(s.Endpoints) == 0 {
		bad(KeyEtcdEndpoints, "empty: set the URL(s) at which peers reach the clustermesh-apiserver's etcd, e.g. https://203.0.113.10:32379")
	}
	for _, ep := range s.Endpoints {
		if u, err := url.Parse(ep); err != nil || u.Scheme != "https" || u.Host == "" {
			bad(KeyEtcdEndpoints, "%q is not an https URL like https://203.0.113.10:32379", ep)
		}
	}
	s.MeshConfigDir = d[KeyMeshConfigDir]
	if s.MeshConfigDir == "" {
		s.MeshConfigDir = DefaultMeshConfigDir
	}
	if !filepath.IsAbs(s.MeshConfigDir) {
		bad(KeyMeshConfigDir, "%q is not an absolute path", s.MeshConfigDir)
	}
	switch v := d[KeyCache]; v {
	case "", "true":
		s.Cache = true
	case "false":
	default:
		bad(KeyCache, "%q: set true (the clustermesh-apiserver caches the peers for the agents) or false (every agent reads every peer)", v)
	}
	s.Paths = schema.Paths{Root: d[KeyKVStoreRoot]}
	if s.Paths.Root == "" {
		s.Paths = schema.DefaultPaths()
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidSettings, s.where(), errors.Join(errs...))
	}
	if err := s.loadCA(ctx); err != nil {
		return nil, err
	}
	if err := s.loadAdmin(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func notInstalled(c *Cluster, kind, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w in %s: %s %s/%s not found: install it with `clustermesh install --context %s --cluster-name <name> --cluster-id <id>` (or check --namespace)",
			ErrNotInstalled, c, kind, c.Namespace, name, c.Context)
	}
	return fmt.Errorf("read %s %s/%s in %s: %w", kind, c.Namespace, name, c, err)
}

func (s *Settings) secret(ctx context.Context, name string, keys ...string) (map[string][]byte, error) {
	sec, err := s.Cluster.Kube.CoreV1().Secrets(s.Cluster.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, notInstalled(s.Cluster, "Secret", name, err)
	}
	for _, k := range keys {
		if len(sec.Data[k]) == 0 {
			return nil, fmt.Errorf("%w: Secret %s/%s in %s has no key %s: re-create it with `clustermesh install`",
				ErrInvalidSettings, s.Cluster.Namespace, name, s.Cluster, k)
		}
	}
	return sec.Data, nil
}

func (s *Settings) loadCA(ctx context.Context) error {
	data, err := s.secret(ctx, CASecretName, CACertKey, CAKeyKey)
	if err != nil {
		return err
	}
	ca, err := ParseCA(data[CACertKey], data[CAKeyKey])
	if err != nil {
		return fmt.Errorf("%w: Secret %s/%s in %s: %w", ErrInvalidSettings, s.Cluster.Namespace, CASecretName, s.Cluster, err)
	}
	s.CA, s.CAPEM = ca, data[CACertKey]
	return nil
}

func (s *Settings) loadAdmin(ctx context.Context) error {
	data, err := s.secret(ctx, AdminSecretName, TLSCertKey, TLSKeyKey)
	if err != nil {
		return err
	}
	leaf, err := ParseLeaf(data[TLSCertKey], data[TLSKeyKey])
	if err == nil {
		err = VerifyLeaf(leaf, s.CA, kvstore.AdminUser, 0)
	}
	if err != nil {
		return fmt.Errorf("%w: admin certificate in Secret %s/%s in %s: %w",
			ErrInvalidSettings, s.Cluster.Namespace, AdminSecretName, s.Cluster, err)
	}
	s.adminCert, s.adminKey = data[TLSCertKey], data[TLSKeyKey]
	return nil
}

// ConnectAdmin logs into the cluster's etcd as admin, at the endpoints of
// the ConfigMap. Close the client when done.
func (s *Settings) ConnectAdmin(ctx context.Context) (*kvstore.Client, error) {
	dir, err := os.MkdirTemp("", "clustermesh-admin-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory for the admin certificate: %w", err)
	}
	defer os.RemoveAll(dir) // the client reads the files once, at Connect
	cfg := kvstore.ClientConfig{
		Endpoints:     s.Endpoints,
		TrustedCAFile: filepath.Join(dir, "ca.crt"),
		CertFile:      filepath.Join(dir, "tls.crt"),
		KeyFile:       filepath.Join(dir, "tls.key"),
		DialTimeout:   kvstore.Duration(5 * time.Second),
		RateLimitQPS:  -1,
	}
	for path, b := range map[string][]byte{cfg.TrustedCAFile: s.CAPEM, cfg.CertFile: s.adminCert, cfg.KeyFile: s.adminKey} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("write the admin certificate: %w", err)
		}
	}
	cli, err := kvstore.Connect(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect as admin to the etcd of cluster %s (%s, %s %s): %w "+
			"(hint: the endpoints must be reachable from this machine and served by the clustermesh-apiserver)",
			s.Name, s.Cluster, KeyEtcdEndpoints, strings.Join(s.Endpoints, ","), err)
	}
	return cli, nil
}

// PeersSecret returns the cluster's mesh Secret.
func (s *Settings) PeersSecret(ctx context.Context) (*corev1.Secret, error) {
	sec, err := s.Cluster.Kube.CoreV1().Secrets(s.Cluster.Namespace).Get(ctx, PeersSecretName, metav1.GetOptions{})
	if err != nil {
		return nil, notInstalled(s.Cluster, "Secret", PeersSecretName, err)
	}
	return sec, nil
}

// ConfiguredPeers returns the peer names of a mesh Secret (keys without
// a dot, as the agent reads them), sorted.
func ConfiguredPeers(sec *corev1.Secret) []string {
	var out []string
	for k := range sec.Data {
		if !strings.Contains(k, ".") && !strings.HasPrefix(k, "..") {
			out = append(out, k)
		}
	}
	sortStrings(out)
	return out
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
