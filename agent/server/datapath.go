package server

import (
	"context"
	"fmt"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/bpfdp"
	"github.com/clustermesh/clustermesh/agent/flows"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/tunnel"
)

// loadBPF makes the eBPF datapath the agent's (--datapath=bpf), reopening
// what a previous run pinned, with the recorder of its flows and, with
// --cgroup-root, the socket load-balancing programs attached.
func (a *Agent) loadBPF(ctx context.Context) error {
	cfg := a.cfg
	dp, err := bpfdp.New(ctx, bpf.Options{PinDir: cfg.BPFPinDir, TCAttach: cfg.TCAttach, TraceSample: cfg.FlowsAllowedSample,
		IPCacheMaxEntries: cfg.BPFIPCacheMaxEntries, PolicyMaxEntries: cfg.BPFPolicyMaxEntries}, cfg.EndpointNetNS, bpfdp.WithLogger(a.log))
	if err != nil {
		return fmt.Errorf("--datapath=bpf: load the eBPF datapath (pinned under --bpf-pin-dir %s): %w", cfg.BPFPinDir, err)
	}
	a.Datapath, a.closeDP = dp, func() { _ = dp.Close() }
	a.bpf = dp.BPF()
	a.flows = flows.NewRecorder(flows.Config{Node: cfg.NodeName, Capacity: cfg.FlowsCapacity,
		Resolver: flows.NewStateResolver(a.State, cfg.ClusterName), DatapathLost: a.bpf.EventsLost, Log: a.log})
	a.Registry.MustRegister(a.flows.Collectors()...)
	if cfg.CgroupRoot != "" {
		if err := dp.BPF().AttachCgroup(cfg.CgroupRoot); err != nil {
			return fmt.Errorf("--cgroup-root %s: attach the socket load-balancing programs: %w", cfg.CgroupRoot, err)
		}
	}
	return nil
}

// openWireGuard creates the WireGuard device (--enable-wireguard) and
// makes it the datapath's routing peers table.
func (a *Agent) openWireGuard(ctx context.Context) error {
	cfg := a.cfg
	dev, err := tunnel.New(ctx, tunnel.Config{Name: cfg.WireGuardDevice, KeyFile: cfg.WireGuardKeyFile,
		ListenPort: cfg.WireGuardPort, NetNSPath: cfg.WireGuardNetNS, Logger: a.log})
	if err != nil {
		return fmt.Errorf("--enable-wireguard: %w", err)
	}
	closeDP := a.closeDP
	a.Datapath, a.wireguard = withPeers{Datapath: a.Datapath, peers: dev.Peers()}, dev
	a.closeDP = func() { _ = dev.Close(); closeDP() }
	return nil
}

// withPeers is a datapath whose routing peers are the WireGuard device's.
type withPeers struct {
	datapath.Datapath
	peers datapath.Table[string, datapath.Peer]
}

func (w withPeers) Peers() datapath.Table[string, datapath.Peer] { return w.peers }
