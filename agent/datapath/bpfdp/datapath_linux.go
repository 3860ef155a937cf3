package bpfdp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
)

// Datapath implements datapath.Datapath with the eBPF datapath. Its tables
// are safe for concurrent use.
type Datapath struct {
	bpf      *bpf.Datapath
	metaDir  string
	records  *ebpf.Map
	clusters *ebpf.Map

	ipcache  *ipcacheTable
	services *servicesTable
	policies *policiesTable
	attached *attachmentsTable
	peers    *datapath.MemTable[string, datapath.Peer]

	mu     sync.Mutex // guards closed
	closed bool
}

var _ datapath.Datapath = (*Datapath)(nil)

// MetaDir is where New pins the maps of the kernel state that the bpf maps
// do not hold, next to the bpf pins: pinDir + "-meta" (the bpf package owns
// everything under its PinDir).
func MetaDir(pinDir string) string {
	if pinDir == "" {
		pinDir = bpf.DefaultPinDir
	}
	return pinDir + "-meta"
}

// New loads the eBPF datapath (bpf.Load) and opens its companion maps under
// MetaDir(opts.PinDir), adopting what a previous process pinned in both.
// Endpoints' interfaces are in the network namespace at attachNetNS (the
// process's when empty).
func New(ctx context.Context, opts bpf.Options, attachNetNS string) (*Datapath, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open eBPF datapath: %w", err)
	}
	b, err := bpf.Load(opts)
	if err != nil {
		return nil, fmt.Errorf("open eBPF datapath: %w", err)
	}
	d := &Datapath{bpf: b, metaDir: MetaDir(b.PinDir()), peers: datapath.NewMemTable[string, datapath.Peer]()}
	if err := d.openMeta(); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("open eBPF datapath: %w", err)
	}
	clusters, err := newClusterTable(d.clusters)
	if err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("open eBPF datapath: %w", err)
	}
	cfgs, err := b.EndpointConfigs().List()
	if err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("open eBPF datapath: %w", err)
	}
	recs := &records{m: d.records}
	d.ipcache = &ipcacheTable{c: b.IPCache(), clusters: clusters}
	d.services = &servicesTable{s: b.Services(), rec: recs}
	d.policies = &policiesTable{cfgs: b.EndpointConfigs(), policy: b.Policy(), rec: recs, written: cfgs}
	d.attached = &attachmentsTable{b: b, rec: recs, netns: attachNetNS}
	return d, nil
}

func (d *Datapath) openMeta() error {
	if err := os.MkdirAll(d.metaDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", d.metaDir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(d.metaDir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", d.metaDir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("%s is not on a bpffs mount: put the bpf pin directory below a bpffs mount point, not on it", d.metaDir)
	}
	var err error
	opts := ebpf.MapOptions{PinPath: d.metaDir}
	if d.records, err = ebpf.NewMapWithOptions(recordsSpec(), opts); err != nil {
		return metaError("records", err)
	}
	if d.clusters, err = ebpf.NewMapWithOptions(clustersSpec(), opts); err != nil {
		return metaError("cluster table", err)
	}
	return nil
}

func metaError(what string, err error) error {
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return fmt.Errorf("open pinned %s: another layout is pinned; remove the pins (Datapath.Unpin) to recreate them: %w", what, err)
	}
	return fmt.Errorf("open pinned %s: %w", what, err)
}

// IPCache implements datapath.Datapath. Keys must be masked prefixes (IPv4
// ones not mapped into IPv6); HostIP an IPv4 address or none. Cluster is
// kept as an index into a pinned table of cluster names.
func (d *Datapath) IPCache() datapath.Table[netip.Prefix, datapath.IPCacheEntry] {
	return d.ipcache
}

// Peers implements datapath.Datapath in process memory: routes and
// WireGuard peers have no kernel part yet (they arrive with the routing and
// encryption work), so this table starts empty after a restart.
func (d *Datapath) Peers() datapath.Table[string, datapath.Peer] { return d.peers }

// Services implements datapath.Datapath: IPv4 TCP and UDP frontends only;
// Update of others fails with ErrNotSupported.
func (d *Datapath) Services() datapath.Table[datapath.ServiceKey, datapath.Service] {
	return d.services
}

// Policies implements datapath.Datapath.
func (d *Datapath) Policies() datapath.Table[uint16, datapath.EndpointPolicy] {
	return d.policies
}

// Attachments implements datapath.Datapath: the tc programs on endpoints'
// host-side interfaces.
func (d *Datapath) Attachments() datapath.Table[string, datapath.Attachment] {
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
	var errs []error
	for _, m := range []*ebpf.Map{d.records, d.clusters} {
		if m != nil {
			if err := m.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", m, err))
			}
		}
	}
	if err := d.bpf.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Unpin removes every pin (the bpf package's and the companion maps);
// nothing is left after Close.
func (d *Datapath) Unpin() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return bpf.ErrClosed
	}
	var errs []error
	for _, m := range []*ebpf.Map{d.records, d.clusters} {
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", m, err))
		}
	}
	if err := os.Remove(d.metaDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", d.metaDir, err))
	}
	if err := d.bpf.Unpin(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
