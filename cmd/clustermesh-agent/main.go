// Command clustermesh-agent connects a node to every peer cluster of the
// mesh and programs its datapath from the merged state.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/clustermesh/clustermesh/agent/flows"
	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/server"
	"github.com/clustermesh/clustermesh/internal/cmdutil"
	"github.com/clustermesh/clustermesh/internal/flagconf"
)

func main() { cmdutil.Main(newCommand()) }

func newCommand() *cobra.Command {
	var cfg server.Config
	var configFile, logLevel string
	var defaultLocal bool
	cmd := &cobra.Command{
		Use:   "clustermesh-agent",
		Short: "Connect this node to every peer cluster of the mesh and program its datapath",
		Example: `  clustermesh-agent --node-name $(hostname) --cluster-name cluster1 --cluster-id 1 \
    --mesh-config-dir /var/lib/clustermesh/peers --api-socket /var/run/clustermesh/agent.sock

  # Local API (HTTP/JSON on the unix socket, see docs/agent-api.md):
  curl --unix-socket /var/run/clustermesh/agent.sock http://agent/v1/status`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagconf.Apply(cmd.Flags(), "CLUSTERMESH_AGENT", configFile); err != nil {
				return err
			}
			cfg.PolicyAllClusters = !defaultLocal
			log, err := cmdutil.Logger(logLevel)
			if err != nil {
				return err
			}
			a, err := server.New(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML file whose keys are flag names")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "the Kubernetes node this agent runs on")
	f.StringVar(&cfg.ClusterName, "cluster-name", "", "name of the local cluster")
	f.Uint32Var(&cfg.ClusterID, "cluster-id", 0, "ID of the local cluster")
	f.Uint32Var(&cfg.MaxConnectedClusters, "max-connected-clusters", 255, "255 or 511; the same in every cluster of the mesh")
	f.StringVar(&cfg.MeshConfigDir, "mesh-config-dir", "", "directory of peer etcd client configs, one file per peer named after it")
	f.StringVar(&cfg.Datapath, "datapath", "bpf", `"bpf": program eBPF maps and programs; "none": keep the datapath in memory (tests, dry runs)`)
	f.StringVar(&cfg.BPFPinDir, "bpf-pin-dir", "/sys/fs/bpf/clustermesh", "bpffs directory where the eBPF maps and links are pinned (kept across agent restarts)")
	f.Uint32Var(&cfg.BPFIPCacheMaxEntries, "bpf-ipcache-max-entries", 0, "size of the eBPF ipcache: every pod IP of the mesh, node addresses and CIDR identities (default 524288; memory is used per entry; a change needs the pins removed)")
	f.Uint32Var(&cfg.BPFPolicyMaxEntries, "bpf-policy-max-entries", 0, "size of the eBPF policy map: the expanded rules of every endpoint of the node (default 262144; a change needs the pins removed)")
	f.StringVar(&cfg.TCAttach, "tc-attach", "", `how the tc programs are attached to pods' interfaces: "" (TCX, or clsact + cls_bpf where the kernel has no TCX), "tcx" or "clsact"`)
	f.StringVar(&cfg.CgroupRoot, "cgroup-root", "auto", `cgroup v2 directory where the socket load-balancing programs for Services are attached ("auto": the cgroup2 mount; "": none)`)
	f.StringVar(&cfg.StateDir, "state-dir", "/var/run/clustermesh/state", "directory of the pod interfaces the CNI plugin reported (kept across agent restarts, not across reboots)")
	f.StringVar(&cfg.APISocket, "api-socket", "/var/run/clustermesh/agent.sock", "unix socket of the local API")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file (in-cluster config when empty)")
	f.StringVar(&cfg.HealthAddr, "health-addr", ":9879", `address of /healthz and /readyz ("": none)`)
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", ":9962", `address of /metrics for Prometheus ("": only on the API socket)`)
	f.StringVar(&cfg.KVStoreRoot, "kvstore-root", "cilium", "root prefix of the etcd schema")
	f.DurationVar(&cfg.CacheTTL, "clustermesh-cache-ttl", 0,
		"revoke a peer's state when its heartbeat has not changed for this long (0: keep the last state; must exceed the peers' heartbeat interval)")
	f.DurationVar(&cfg.PeerProbeInterval, "clustermesh-probe-interval", remote.DefaultProbeInterval,
		"how often each peer connection reads the peer's heartbeat to tell that it answers; two intervals without an answer report the peer unreachable (its state is kept)")
	f.StringVar(&cfg.ClusterMeshCacheConfig, "clustermesh-cache-config", "",
		"etcd client config of the local clustermesh-apiserver's cache of remote state (its etcd, the local user's certificate): read every peer of --mesh-config-dir there instead of at the peer's own etcd (\"\": read every peer directly)")
	f.IntVar(&cfg.FlowsCapacity, "flows-capacity", flows.DefaultCapacity, "how many of the datapath's most recent flows (connections and drops) GET /v1/flows and /v1/drops keep (--datapath=bpf)")
	f.IntVar(&cfg.FlowsCapacity, "drops-capacity", flows.DefaultCapacity, "deprecated name of --flows-capacity")
	_ = f.MarkDeprecated("drops-capacity", "use --flows-capacity (drops are kept with the other flows)")
	f.IntVar(&cfg.FlowsAllowedSample, "flows-allowed-sample", 1, "record 1 in N forwarded connections as flows (1: every one; -1: none); drops are always recorded (--datapath=bpf)")
	f.BoolVar(&cfg.WireGuard, "enable-wireguard", true, "route and encrypt traffic to every other node of the mesh with WireGuard (kernel, or wireguard-go where the kernel has none)")
	f.StringVar(&cfg.WireGuardKeyFile, "wireguard-key-file", "/var/lib/clustermesh-state/wireguard.key", "the node's WireGuard private key (created if absent; keep it across restarts)")
	f.StringVar(&cfg.WireGuardDevice, "wireguard-device", "cm-wg0", "name of the WireGuard device")
	f.IntVar(&cfg.WireGuardPort, "wireguard-port", 51871, "UDP port of WireGuard, the same on every node of the mesh")
	f.BoolVar(&defaultLocal, "policy-default-local-cluster", true,
		"policy peer selectors without an io.cilium.k8s.policy.cluster requirement select only the local cluster")
	return cmd
}
