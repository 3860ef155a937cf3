package server

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/rest"

	"github.com/clustermesh/clustermesh/agent/flows"
	"github.com/clustermesh/clustermesh/identity"
)

// Config of a clustermesh-agent.
type Config struct {
	NodeName             string // --node-name
	ClusterName          string // --cluster-name
	ClusterID            uint32 // --cluster-id
	MaxConnectedClusters uint32 // --max-connected-clusters
	MeshConfigDir        string // --mesh-config-dir
	Datapath             string // --datapath: "bpf" or "none" (in memory)
	BPFPinDir            string // --bpf-pin-dir (bpffs directory of the pinned maps and links)
	APISocket            string // --api-socket
	KVStoreRoot          string // --kvstore-root
	Kubeconfig           string // --kubeconfig (in-cluster config when empty)
	// RestConfig, when set (tests), is used instead of Kubeconfig.
	RestConfig *rest.Config
	// PolicyAllClusters: peer selectors without a cluster requirement
	// select every cluster (--policy-default-local-cluster=false).
	PolicyAllClusters bool
	HealthAddr        string // --health-addr (/healthz, /readyz over TCP; "": none)
	MetricsAddr       string // --metrics-addr (/metrics over TCP; "": only on the API socket)
	// NoEvents: do not record Kubernetes Events (tests of many agents).
	NoEvents bool
	// WireGuard routes and encrypts traffic to every other node
	// (--enable-wireguard); its key is WireGuardKeyFile, its device
	// WireGuardDevice listening on WireGuardPort; WireGuardNetNS (tests)
	// puts the device in another network namespace.
	WireGuard        bool
	WireGuardKeyFile string
	WireGuardDevice  string
	WireGuardPort    int
	WireGuardNetNS   string
	// BPFIPCacheMaxEntries and BPFPolicyMaxEntries size the ipcache and
	// the policy map (--bpf-ipcache-max-entries, --bpf-policy-max-entries;
	// 0: bpf.Options' defaults, 512k and 256k).
	BPFIPCacheMaxEntries uint32
	BPFPolicyMaxEntries  uint32
	// TCAttach is how the tc programs are attached to pods' interfaces
	// (--tc-attach): "" (TCX, clsact where the kernel has none), "tcx" or
	// "clsact".
	TCAttach string
	// StateDir keeps what the agent must not lose across restarts: the
	// endpoints the CNI plugin reported (--state-dir).
	StateDir string
	// EndpointNetNS (tests) is the network namespace of the endpoints'
	// host-side interfaces, when it is not the agent's.
	EndpointNetNS string
	// CgroupRoot is the cgroup v2 directory where the socket
	// load-balancing programs are attached (--cgroup-root; "auto": the
	// cgroup2 mount; "": none, services are not load-balanced).
	CgroupRoot string
	// CacheTTL revokes a peer's state when its heartbeat has not changed
	// for this long (--clustermesh-cache-ttl; 0: keep it).
	CacheTTL time.Duration
	// PeerProbeInterval: how often each peer connection checks that the
	// peer answers; two intervals without an answer report it unreachable
	// (--clustermesh-probe-interval; 0: remote.DefaultProbeInterval).
	PeerProbeInterval time.Duration
	// ClusterMeshCacheConfig is the etcd client config of the local
	// clustermesh-apiserver's cache of remote state
	// (--clustermesh-cache-config): every peer of MeshConfigDir is then
	// read there instead of at its own etcd ("": read every peer directly).
	ClusterMeshCacheConfig string
	// FlowsCapacity is how many of the datapath's most recent flows
	// GET /v1/flows keeps (--flows-capacity; 0: flows.DefaultCapacity).
	// Flows are recorded only with --datapath=bpf.
	FlowsCapacity int
	// FlowsAllowedSample records 1 in N forwarded connections as flows
	// (--flows-allowed-sample; 0 or 1: every one, negative: none); drops
	// are always recorded.
	FlowsAllowedSample int
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name: required (the Kubernetes node this agent runs on)"))
	}
	if err := identity.ValidateClusterName(c.ClusterName); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-name: %w", err))
	}
	if c.MaxConnectedClusters == 0 {
		c.MaxConnectedClusters = 255
	}
	if layout, err := identity.NewLayout(c.MaxConnectedClusters); err != nil {
		errs = append(errs, fmt.Errorf("--max-connected-clusters: %w", err))
	} else if err := layout.ValidateClusterID(identity.ClusterID(c.ClusterID)); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-id: %w", err))
	}
	if c.MeshConfigDir == "" {
		errs = append(errs, errors.New("--mesh-config-dir: required (the directory of peer etcd configs, one file per peer)"))
	}
	switch c.Datapath {
	case "", "none":
		c.Datapath = "none"
	case "bpf":
		if c.BPFPinDir == "" {
			c.BPFPinDir = "/sys/fs/bpf/clustermesh"
		}
		if c.CgroupRoot == "auto" {
			root, err := cgroup2Root()
			if err != nil {
				errs = append(errs, fmt.Errorf("--cgroup-root auto: %w", err))
			}
			c.CgroupRoot = root
		}
	default:
		errs = append(errs, fmt.Errorf("--datapath %q: use \"bpf\" (eBPF maps and programs) or \"none\" (in memory, for tests)", c.Datapath))
	}
	if c.APISocket == "" {
		errs = append(errs, errors.New("--api-socket: required (e.g. /var/run/clustermesh/agent.sock)"))
	}
	if c.PeerProbeInterval < 0 {
		errs = append(errs, fmt.Errorf("--clustermesh-probe-interval %v: must be positive (or 0 for the default)", c.PeerProbeInterval))
	}
	if c.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("--clustermesh-cache-ttl %v: must be 0 (keep the last state) or positive", c.CacheTTL))
	}
	switch {
	case c.FlowsCapacity == 0:
		c.FlowsCapacity = flows.DefaultCapacity
	case c.FlowsCapacity < 0:
		errs = append(errs, fmt.Errorf("--flows-capacity %d: must be positive (the number of recent flows kept, default %d)", c.FlowsCapacity, flows.DefaultCapacity))
	}
	if c.KVStoreRoot == "" {
		c.KVStoreRoot = "cilium"
	}
	if c.WireGuard && c.WireGuardKeyFile == "" {
		c.WireGuardKeyFile = "/var/lib/clustermesh-state/wireguard.key"
	}
	if c.WireGuardPort < 0 || c.WireGuardPort > 65535 {
		errs = append(errs, fmt.Errorf("--wireguard-port %d: must be a UDP port (1-65535), the same on every node of the mesh", c.WireGuardPort))
	}
	return errors.Join(errs...)
}
