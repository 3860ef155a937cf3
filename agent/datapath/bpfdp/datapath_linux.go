package bpfdp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
)

// Datapath implements datapath.Datapath with the eBPF datapath. Its tables
// are safe for concurrent use.
type Datapath struct {
	bpf *bpf.Datapath

	ipcache  *ipcacheTable
	services *servicesTable
	policies *policiesTable
	attached *attachmentsTable
	cidrs    *cidrsTable
	peers    *datapath.MemTable[string, datapath.Peer]

	mu     sync.Mutex // guards closed
	closed bool
}

var _ datapath.Datapath = (*Datapath)(nil)

// New loads the eBPF datapath (bpf.Load), adopting what a previous process
// pinned, and removes the companion maps an older version pinned beside
// it (see removeLegacyPins). Endpoints' interfaces are in the network
// namespace at attachNetNS (the process's when empty).
func New(ctx context.Context, opts bpf.Options, attachNetNS string, o ...Option) (*Datapath, error) {
	var cfg config
	for _, f := range o {
		f(&cfg)
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open eBPF datapath: %w", err)
	}
	b, err := bpf.Load(opts)
	if err != nil {
		return nil, fmt.Errorf("open eBPF datapath: %w", err)
	}
	removeLegacyPins(b.PinDir(), cfg.log)
	return &Datapath{
		bpf:      b,
		ipcache:  &ipcacheTable{c: b.IPCache()},
		services: &servicesTable{s: b.Services()},
		policies: &policiesTable{cfgs: b.EndpointConfigs(), policy: b.Policy()},
		attached: &attachmentsTable{b: b, netns: attachNetNS},
		cidrs:    &cidrsTable{c: b.CIDRIdentities()},
		peers:    datapath.NewMemTable[string, datapath.Peer](),
	}, nil
}

// IPCache implements datapath.Datapath. Keys must be masked prefixes (IPv4
// ones not mapped into IPv6); HostIP an IPv4 address or none. The kernel
// does not keep Cluster (KeptIPCache).
func (d *Datapath) IPCache() datapath.Table[netip.Prefix, datapath.IPCacheEntry] {
	return d.ipcache
}

// Peers implements datapath.Datapath in process memory: routes and
// WireGuard peers have no kernel part yet (they arrive with the routing and
// encryption work), so this table starts empty after a restart.
func (d *Datapath) Peers() datapath.Table[string, datapath.Peer] { return d.peers }

// Services implements datapath.Datapath: TCP and UDP frontends of either
// family, each with backends of its own family; Update of others fails
// with ErrNotSupported. The kernel keeps backends'
// addresses and ports only (KeptService).
func (d *Datapath) Services() datapath.Table[datapath.ServiceKey, datapath.Service] {
	return d.services
}

// CIDRIdentities implements datapath.Datapath (bpf.CIDRIdentities): keys
// must be masked prefixes, IPv4 ones as such, as for the ipcache.
func (d *Datapath) CIDRIdentities() datapath.Table[netip.Prefix, identity.NumericIdentity] {
	return d.cidrs
}

// Policies implements datapath.Datapath. The kernel keeps rules as entries
// (KeptPolicy).
func (d *Datapath) Policies() datapath.Table[uint16, datapath.EndpointPolicy] {
	return d.policies
}

// Attachments implements datapath.Datapath: the tc programs on endpoints'
// host-side interfaces, by interface index.
func (d *Datapath) Attachments() datapath.Table[int, datapath.Attachment] {
	return d.attached
}

// BPF returns the underlying eBPF datapath (to attach endpoints, read
// events).
func (d *Datapath) BPF() *bpf.Datapath { return d.bpf }

// Close releases the Go side; every pin stays for the next New.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return d.bpf.Close()
}

// Unpin removes every pin; nothing is left after Close.
func (d *Datapath) Unpin() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return bpf.ErrClosed
	}
	return d.bpf.Unpin()
}
