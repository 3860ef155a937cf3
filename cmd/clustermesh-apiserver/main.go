// Command clustermesh-apiserver exports a Kubernetes cluster's identities,
// endpoints, nodes and global services into the cluster's etcd for peer
// clusters to read.
package main

import (
	"github.com/spf13/cobra"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/server"
	"github.com/clustermesh/clustermesh/internal/cmdutil"
	"github.com/clustermesh/clustermesh/internal/flagconf"
)

func main() { cmdutil.Main(newCommand()) }

func newCommand() *cobra.Command {
	var cfg server.Config
	var configFile, logLevel string
	cmd := &cobra.Command{
		Use:   "clustermesh-apiserver",
		Short: "Export a cluster's identities, endpoints, nodes and global services into its etcd",
		Example: `  # Embedded etcd serving peers over mTLS:
  clustermesh-apiserver --cluster-name cluster1 --cluster-id 1 \
    --etcd-data-dir /var/lib/clustermesh/etcd --etcd-listen-client-urls https://0.0.0.0:2379 \
    --tls-cert-file server.crt --tls-key-file server.key --tls-ca-file ca.crt \
    --admin-cert-file admin.crt --admin-key-file admin.key

  # Every flag can also be set as CLUSTERMESH_APISERVER_<FLAG> or in --config:
  CLUSTERMESH_APISERVER_CLUSTER_ID=1 clustermesh-apiserver --config /etc/clustermesh/apiserver.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagconf.Apply(cmd.Flags(), "CLUSTERMESH_APISERVER", configFile); err != nil {
				return err
			}
			log, err := cmdutil.Logger(logLevel)
			if err != nil {
				return err
			}
			return server.Run(cmd.Context(), cfg, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML file whose keys are flag names")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.ClusterName, "cluster-name", "", "name of this cluster (lowercase, at most 32 characters)")
	f.Uint32Var(&cfg.ClusterID, "cluster-id", 0, "ID of this cluster (1..max-connected-clusters)")
	f.Uint32Var(&cfg.MaxConnectedClusters, "max-connected-clusters", 255, "255 or 511; the same in every cluster of the mesh")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file (in-cluster config when empty)")
	f.StringVar(&cfg.EtcdDataDir, "etcd-data-dir", "", "data directory of the embedded etcd")
	f.StringSliceVar(&cfg.EtcdListenClientURLs, "etcd-listen-client-urls", nil, "client URLs of the embedded etcd")
	f.StringVar(&cfg.EtcdConfig, "etcd-config", "", "etcd client config file of an external etcd (instead of the embedded one)")
	f.StringVar(&cfg.TLSCertFile, "tls-cert-file", "", "serving certificate of the embedded etcd")
	f.StringVar(&cfg.TLSKeyFile, "tls-key-file", "", "serving key of the embedded etcd")
	f.StringVar(&cfg.TLSCAFile, "tls-ca-file", "", "CA of the client certificates the embedded etcd accepts")
	f.StringVar(&cfg.AdminCertFile, "admin-cert-file", "", "client certificate (common name admin) for the embedded etcd")
	f.StringVar(&cfg.AdminKeyFile, "admin-key-file", "", "client key for the embedded etcd")
	f.StringVar(&cfg.KVStoreRoot, "kvstore-root", "cilium", "root prefix of the etcd schema")
	f.StringVar(&cfg.HealthAddr, "health-addr", ":9880", "address of /healthz and /readyz (empty: off)")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", ":9962", "address of /metrics (empty: off)")
	f.BoolVar(&cfg.LeaderElect, "leader-elect", false, "elect one replica to allocate identities")
	f.StringVar(&cfg.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election lease")
	f.StringVar(&cfg.LeaderElectionID, "leader-election-id", "", "name of the lease (default clustermesh-apiserver-<cluster>)")
	f.StringVar(&cfg.Identity, "leader-election-identity", "", "this replica's name in the election (default hostname)")
	f.BoolVar(&cfg.DefaultGlobalNamespace, "default-global-namespace", true,
		"export global services of namespaces without the clustermesh.cilium.io/global annotation")
	f.DurationVar(&cfg.IdentityGCGrace, "identity-gc-grace", 0, "how long an unused identity is kept (default 15m)")
	f.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 0, "heartbeat period (default 1m)")
	f.BoolVar(&cfg.Cache, "cache", true,
		"cache the peers for the local agents: connect once to every peer of --mesh-config-dir, validate and mirror it into the local etcd (Cilium's KVStoreMesh); --cache=false turns it off (agents then read every peer directly)")
	f.StringVar(&cfg.MeshConfigDir, "mesh-config-dir", server.DefaultMeshConfigDir, "directory of peer etcd client configs, one file per peer named after it (the agents' mesh Secret)")
	f.DurationVar(&cfg.CacheTTL, "cache-ttl", 0, "revoke the cached state of a peer whose heartbeat has not changed for this long (0: keep a lost peer's last state)")
	f.DurationVar(&cfg.PeerProbeInterval, "peer-probe-interval", remote.DefaultProbeInterval,
		"how often the cache reads each peer's heartbeat to tell that it answers; two intervals without an answer report the peer unreachable in status (its state is kept)")
	return cmd
}
