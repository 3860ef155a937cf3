package mesh

import "github.com/clustermesh/clustermesh/kvstore"

// The objects the chart installs in each cluster's namespace, and their keys.
// docs/cli.md describes them for operators.
const (
	// ConfigMapName holds the cluster's mesh settings.
	ConfigMapName = "clustermesh-config"
	// KeyClusterName etc. are the ConfigMap's keys.
	KeyClusterName          = "cluster-name"
	KeyClusterID            = "cluster-id"
	KeyMaxConnectedClusters = "max-connected-clusters"
	// KeyPodCIDRs is a comma-separated list of the cluster's pod CIDRs.
	KeyPodCIDRs = "pod-cidrs"
	// KeyEtcdEndpoints is a comma-separated list of the URLs at which peer
	// clusters (and the CLI) reach the clustermesh-apiserver's etcd.
	KeyEtcdEndpoints = "etcd-endpoints"
	// KeyMeshConfigDir is where the agents mount the mesh Secret; the peer
	// configs name their certificate files under it.
	KeyMeshConfigDir = "mesh-config-dir"
	// KeyKVStoreRoot is the root prefix of the etcd schema.
	KeyKVStoreRoot = "kvstore-root"
	// KeyCache says whether the cluster's clustermesh-apiserver caches the
	// peers for its agents ("true", the default: the apiserver's --cache,
	// the agents' --clustermesh-cache-config) or the agents read every
	// peer directly ("false").
	KeyCache = "cache"

	// CASecretName holds the cluster's etcd CA: it signs the etcd server
	// certificate, the admin certificate and every peer's client
	// certificate. Keys CACertKey, CAKeyKey.
	CASecretName = "clustermesh-etcd-ca"
	CACertKey    = "ca.crt"
	CAKeyKey     = "ca.key"

	// AdminSecretName holds the admin client certificate (common name
	// admin) the clustermesh-apiserver and the CLI log into etcd with.
	// Keys TLSCertKey, TLSKeyKey, CACertKey.
	AdminSecretName = "clustermesh-apiserver-admin-cert"
	// ServerSecretName holds the etcd serving certificate.
	ServerSecretName = "clustermesh-apiserver-server-cert"
	TLSCertKey       = "tls.crt"
	TLSKeyKey        = "tls.key"

	// LocalSecretName holds the agents' client certificate (common name
	// local, the read-only user of the cache of remote state) and their
	// etcd client config of the cache (LocalConfigKey), installed while
	// the cache is on. Keys CACertKey, TLSCertKey, TLSKeyKey,
	// LocalConfigKey.
	LocalSecretName = "clustermesh-local-cert"
	LocalConfigKey  = "etcd-config.yaml"

	// PeersSecretName is the mesh Secret the agents mount at
	// mesh-config-dir: per peer <peer> (its etcd client config) and
	// <peer>.etcd-client-ca.crt, <peer>.etcd-client.crt,
	// <peer>.etcd-client.key.
	PeersSecretName = "clustermesh-peers"

	// DefaultNamespace is where the chart is installed unless told.
	DefaultNamespace = "kube-system"
	// DefaultMeshConfigDir is the agents' default mount of the mesh Secret.
	DefaultMeshConfigDir = "/var/lib/clustermesh/peers"
	// ManagedByLabel marks the objects the CLI writes.
	ManagedByLabel = "app.kubernetes.io/managed-by"
)

// Suffixes of a peer's certificate files in the mesh Secret.
const (
	suffixCA   = ".etcd-client-ca.crt"
	suffixCert = ".etcd-client.crt"
	suffixKey  = ".etcd-client.key"
)

// PeerKeys returns the mesh Secret's keys of one peer: its config and its
// three certificate files.
func PeerKeys(peer string) []string {
	return []string{peer, peer + suffixCA, peer + suffixCert, peer + suffixKey}
}

// PeerUser is the etcd user a peer's agents log in as (the common name of
// their client certificate).
func PeerUser(peer string) string { return kvstore.PeerUser(peer) }

// Workloads the chart installs.
const (
	APIServerName = "clustermesh-apiserver"
	AgentName     = "clustermesh-agent"
	// NameLabel selects a workload's pods: app.kubernetes.io/name=<name>.
	NameLabel = "app.kubernetes.io/name"
	// AgentContainer is the agent pods' container; AgentSocket its API
	// socket.
	AgentContainer = "agent"
	AgentSocket    = "/var/run/clustermesh/agent.sock"
)

// AgentStatusPort is the port of the agents' status sidecar (`clustermesh
// agent-status --serve`), reached through the Kubernetes pod proxy.
const AgentStatusPort = 9890
