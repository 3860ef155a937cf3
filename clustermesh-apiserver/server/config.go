// Package server wires a clustermesh-apiserver together: the cluster's etcd
// (embedded, or external), the Kubernetes informers, the identity allocator
// (leader only), the export, the cluster config and heartbeat, and the
// health and metrics endpoints.
//
// Rules: Run owns every goroutine it starts and returns after they stopped;
// configuration errors are returned before anything starts, naming the flag.
package server

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/rest"

	"github.com/clustermesh/clustermesh/identity"
)

// Config of a clustermesh-apiserver. Flag names in comments.
type Config struct {
	ClusterName          string // --cluster-name
	ClusterID            uint32 // --cluster-id
	MaxConnectedClusters uint32 // --max-connected-clusters (255 or 511)
	Kubeconfig           string // --kubeconfig (in-cluster config when empty)
	// RestConfig, when set (tests), is used instead of Kubeconfig.
	RestConfig *rest.Config

	EtcdDataDir          string   // --etcd-data-dir (embedded etcd)
	EtcdListenClientURLs []string // --etcd-listen-client-urls
	EtcdConfig           string   // --etcd-config: external etcd client config file
	// Serving TLS of the embedded etcd: --tls-cert-file, --tls-key-file,
	// --tls-ca-file (the CA that signs peers' client certificates).
	TLSCertFile, TLSKeyFile, TLSCAFile string
	// Client certificate of the admin user for the embedded etcd:
	// --admin-cert-file, --admin-key-file.
	AdminCertFile, AdminKeyFile string

	KVStoreRoot string // --kvstore-root (default "cilium")

	HealthAddr  string // --health-addr (/healthz, /readyz)
	MetricsAddr string // --metrics-addr (/metrics)

	LeaderElect             bool   // --leader-elect
	LeaderElectionNamespace string // --leader-election-namespace
	LeaderElectionID        string // --leader-election-id (default clustermesh-apiserver-<cluster>)
	Identity                string // --leader-election-identity (default hostname)

	// Cache runs the cache of remote state (kvstoremesh): the peers of
	// MeshConfigDir are read once for the whole cluster and mirrored into
	// the local etcd, where the local agents read them (--cache, on by
	// default in the binary).
	Cache         bool
	MeshConfigDir string        // --mesh-config-dir (default /var/lib/clustermesh/peers)
	CacheTTL      time.Duration // --cache-ttl: revoke a lost peer's cached state after this long (0: keep it)
	// PeerProbeInterval: how often the cache checks that each peer answers
	// (--peer-probe-interval; 0: remote.DefaultProbeInterval).
	PeerProbeInterval time.Duration

	DefaultGlobalNamespace bool          // --default-global-namespace
	IdentityGCGrace        time.Duration // --identity-gc-grace
	HeartbeatInterval      time.Duration // --heartbeat-interval
}

// DefaultMeshConfigDir is where the peers' etcd configs are mounted (the
// mesh Secret), as for the agents.
const DefaultMeshConfigDir = "/var/lib/clustermesh/peers"

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if err := identity.ValidateClusterName(c.ClusterName); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-name: %w", err))
	}
	if c.MaxConnectedClusters == 0 {
		c.MaxConnectedClusters = 255
	}
	layout, err := identity.NewLayout(c.MaxConnectedClusters)
	if err != nil {
		errs = append(errs, fmt.Errorf("--max-connected-clusters: %w", err))
	} else if err := layout.ValidateClusterID(identity.ClusterID(c.ClusterID)); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-id: %w", err))
	}
	if c.EtcdConfig == "" && c.EtcdDataDir == "" {
		errs = append(errs, errors.New("--etcd-data-dir: set it for the embedded etcd, or --etcd-config for an external one"))
	}
	if c.EtcdConfig != "" && c.EtcdDataDir != "" {
		errs = append(errs, errors.New("--etcd-config and --etcd-data-dir exclude each other: use an external or an embedded etcd"))
	}
	tlsSet := c.TLSCertFile != "" || c.TLSKeyFile != "" || c.TLSCAFile != ""
	if c.EtcdDataDir != "" && tlsSet {
		for flag, v := range map[string]string{"--tls-cert-file": c.TLSCertFile, "--tls-key-file": c.TLSKeyFile,
			"--tls-ca-file": c.TLSCAFile, "--admin-cert-file": c.AdminCertFile, "--admin-key-file": c.AdminKeyFile} {
			if v == "" {
				errs = append(errs, fmt.Errorf("%s: required when the embedded etcd serves TLS", flag))
			}
		}
	}
	if len(c.EtcdListenClientURLs) == 0 {
		c.EtcdListenClientURLs = []string{"http://127.0.0.1:2379"}
		if tlsSet {
			c.EtcdListenClientURLs = []string{"https://0.0.0.0:2379"}
		}
	}
	if c.KVStoreRoot == "" {
		c.KVStoreRoot = "cilium"
	}
	if c.LeaderElectionID == "" {
		c.LeaderElectionID = "clustermesh-apiserver-" + c.ClusterName
	}
	if c.LeaderElect && c.LeaderElectionNamespace == "" {
		errs = append(errs, errors.New("--leader-election-namespace: required with --leader-elect"))
	}
	// Cilium's etcd client counts a quorum failure, and after a few
	// reconnects, when no heartbeat arrived for 2 × its write interval
	// (1m): a longer period would make Cilium agents of a mixed mesh
	// cycle their connections.
	if c.HeartbeatInterval < 0 || c.HeartbeatInterval >= 2*time.Minute {
		errs = append(errs, fmt.Errorf("--heartbeat-interval %v: must be below 2m (Cilium agents reading this cluster treat 2m without a heartbeat as a lost quorum); the default is 1m", c.HeartbeatInterval))
	}
	if c.Cache && c.MeshConfigDir == "" {
		c.MeshConfigDir = DefaultMeshConfigDir
	}
	if c.PeerProbeInterval < 0 {
		errs = append(errs, fmt.Errorf("--peer-probe-interval %v: must be positive (or 0 for the default)", c.PeerProbeInterval))
	}
	if c.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("--cache-ttl %v: must be 0 (keep a lost peer's last state) or positive", c.CacheTTL))
	}
	if c.IdentityGCGrace <= 0 {
		c.IdentityGCGrace = 15 * time.Minute
	}
	return errors.Join(errs...)
}
