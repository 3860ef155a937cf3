package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Datapath is the loaded eBPF datapath of one node. Its methods are safe for
// concurrent use.
type Datapath struct {
	opts Options
	tc   tcObjects
	sock sockObjects

	ipcache   *IPCache
	cidrs     *CIDRIdentities
	endpoints *EndpointConfigs
	policy    *Policy
	services  *Services

	mu         sync.Mutex           // guards links, tcxMissing and closed
	links      map[string]link.Link // by pin file name (see attach_linux.go)
	tcxMissing bool                 // TCX attach failed as unsupported: use clsact
	closed     bool
}

// Load loads the programs and opens the maps pinned under opts.PinDir,
// creating the ones that are missing. Links pinned by a previous process are
// moved to the new programs, so traffic is not interrupted and tracked
// connections stay valid.
func Load(opts Options) (*Datapath, error) {
	opts = opts.withDefaults()
	switch opts.TCAttach {
	case TCAttachAuto, TCAttachTCX, TCAttachClsact:
	default:
		return nil, fmt.Errorf("tc attach mode %q: use %q (TCX, clsact where missing), %q or %q", opts.TCAttach, TCAttachAuto, TCAttachTCX, TCAttachClsact)
	}
	if err := ensureBPFFS(opts.PinDir); err != nil {
		return nil, err
	}

	d := &Datapath{opts: opts, links: map[string]link.Link{}}
	if err := d.loadTC(); err != nil {
		return nil, err
	}
	if err := d.loadSock(); err != nil {
		_ = d.tc.Close()
		return nil, err
	}
	d.ipcache = &IPCache{m: d.tc.Ipcache, hosts: d.tc.IpcacheHosts}
	if err := d.ipcache.adoptHosts(); err != nil {
		_ = d.Close()
		return nil, err
	}
	d.cidrs = &CIDRIdentities{m: d.tc.CidrIds}
	d.endpoints = &EndpointConfigs{m: d.tc.EpConfig}
	policy, err := newPolicy(d.tc.Policy, d.tc.PolicyGen)
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	d.policy = policy
	d.services = &Services{m4: d.sock.Lb4Services, m6: d.sock.Lb6Services}
	if err := d.restoreLinks(); err != nil {
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

func ensureBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s is not on a bpffs mount (mount -t bpf bpf %s)", dir, dir)
	}
	return nil
}

func (d *Datapath) collectionOptions() *ebpf.CollectionOptions {
	return &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: d.opts.PinDir}}
}

func (d *Datapath) loadTC() error {
	spec, err := loadTc()
	if err != nil {
		return fmt.Errorf("load tc spec: %w", err)
	}
	if n := d.opts.PolicyMaxEntries; n != 0 {
		spec.Maps[tcMapPolicy].MaxEntries = n
	}
	spec.Maps[tcMapIpcache].MaxEntries = d.opts.IPCacheMaxEntries
	spec.Maps[tcMapIpcacheHosts].MaxEntries = d.opts.IPCacheMaxEntries
	sample := uint32(0)
	if d.opts.TraceSample > 0 {
		sample = uint32(d.opts.TraceSample)
	}
	vars := map[string]any{
		tcVarCtTimeoutTcpNs:     uint64(d.opts.CTTimeoutTCP / time.Nanosecond),
		tcVarCtTimeoutOtherNs:   uint64(d.opts.CTTimeoutOther / time.Nanosecond),
		tcVarCtTimeoutClosingNs: uint64(d.opts.CTTimeoutClosing / time.Nanosecond),
		tcVarTraceSample:        sample,
	}
	for name, v := range vars {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	if err := spec.LoadAndAssign(&d.tc, d.collectionOptions()); err != nil {
		return loadError("tc", err)
	}
	removeStalePins(d.opts.PinDir, stalePins...)
	return nil
}

// stalePins are maps earlier versions pinned and this one no longer uses:
// ct4 (IPv4 conntrack, now ct for both families).
var stalePins = []string{"ct4"}

// removeStalePins unpins names under dir, if present (best effort: a map
// left pinned only costs its memory).
func removeStalePins(dir string, names ...string) {
	for _, n := range names {
		_ = os.Remove(filepath.Join(dir, n))
	}
}

func (d *Datapath) loadSock() error {
	spec, err := loadSock()
	if err != nil {
		return fmt.Errorf("load sock spec: %w", err)
	}
	if err := spec.LoadAndAssign(&d.sock, d.collectionOptions()); err != nil {
		return loadError("sock", err)
	}
	return nil
}

func loadError(what string, err error) error {
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return fmt.Errorf("load %s objects: a pinned map has another layout or size; remove the pins (Datapath.Unpin) to recreate them: %w", what, err)
	}
	if ve, ok := errors.AsType[*ebpf.VerifierError](err); ok {
		// %+v prints the whole verifier log, not only its last line.
		return fmt.Errorf("load %s objects: %w\n%s", what, err, fmt.Sprintf("%+v", ve))
	}
	return fmt.Errorf("load %s objects: %w", what, err)
}

// IPCache is the prefix to identity table.
func (d *Datapath) IPCache() *IPCache { return d.ipcache }

// CIDRIdentities is the prefix to CIDR identity table of rules by address.
func (d *Datapath) CIDRIdentities() *CIDRIdentities { return d.cidrs }

// IPCacheCapacity is how many entries the ipcache can hold.
func (d *Datapath) IPCacheCapacity() int { return d.ipcache.Capacity() }

// EndpointConfigs is the per-endpoint configuration table.
func (d *Datapath) EndpointConfigs() *EndpointConfigs { return d.endpoints }

// Policy is the per-endpoint rule table.
func (d *Datapath) Policy() *Policy { return d.policy }

// SetPolicy replaces the rules of endpoint epID; see Policy.Set.
func (d *Datapath) SetPolicy(epID uint16, rules []PolicyRule) error {
	return d.policy.Set(epID, rules)
}

// Services is the service frontend to backends table.
func (d *Datapath) Services() *Services { return d.services }

// PinDir is where the maps and links are pinned.
func (d *Datapath) PinDir() string { return d.opts.PinDir }

// Close releases the Go side of all objects. Pinned maps and links stay, so
// the attached programs keep running until the next Load replaces them.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for name, l := range d.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close link %s: %w", name, err))
		}
	}
	d.links = nil
	if err := d.tc.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close tc objects: %w", err))
	}
	if err := d.sock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close sock objects: %w", err))
	}
	return errors.Join(errs...)
}

// Unpin removes every pin of the datapath (maps and links). The programs stay
// attached until Close; after it, nothing of the datapath remains.
func (d *Datapath) Unpin() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	var errs []error
	for name, l := range d.links {
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin link %s: %w", name, err))
		}
	}
	for _, m := range d.pinnedMaps() {
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin map %s: %w", m, err))
		}
	}
	_ = os.Remove(d.linkDir())
	_ = os.Remove(d.opts.PinDir)
	return errors.Join(errs...)
}

func (d *Datapath) pinnedMaps() []*ebpf.Map {
	return []*ebpf.Map{
		d.tc.Ipcache, d.tc.IpcacheHosts, d.tc.CidrIds, d.tc.Endpoints, d.tc.EpConfig, d.tc.PolicyGen,
		d.tc.Policy, d.tc.Ct, d.tc.Metrics, d.tc.Events,
		d.sock.Lb4Services, d.sock.Lb4Revnat, d.sock.Lb4RevnatSk, d.sock.Lb6Services, d.sock.Lb6Revnat, d.sock.Lb6RevnatSk,
	}
}
