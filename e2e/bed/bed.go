//go:build linux

package bed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Options of a bed.
type Options struct {
	// Dir holds the bed's files (logs, certificates, sockets); short, since
	// unix socket paths live under it. Created if absent, never removed.
	Dir string
	// Log receives the bed's progress, one line per step.
	Log io.Writer
	// DualStack makes every cluster dual-stack (IPv4 and IPv6): nodes
	// with an address of each family on the underlay and a pod CIDR of
	// each, pods with an address of each (host-local with two ranges),
	// kube-apiservers with an IPv4 and an IPv6 Service CIDR. The IPv4
	// addresses stay those of an IPv4-only bed (addrs.go). Default:
	// IPv4 only. The same as Family: FamilyDualStack.
	DualStack bool
	// Family is the clusters' address families: FamilyIPv4 (the
	// default), FamilyDualStack (as DualStack) or FamilyIPv6, IPv6 only:
	// nodes with only an IPv6 underlay address and InternalIP, IPv6 pod
	// CIDRs and pods, kube-apiservers with only an IPv6 Service CIDR, so
	// that WireGuard runs over the IPv6 underlay. The control plane is
	// still reached on the host's 127.0.0.1 (the nodes' loopback
	// forwarders).
	Family AddrFamily
	// DirectPeers makes the agents read every peer at its own etcd, and
	// runs the clustermesh-apiservers without their cache of remote state
	// (--cache=false). Default: each clustermesh-apiserver caches the
	// peers of its mesh directory and the agents read them there
	// (--clustermesh-cache-config).
	DirectPeers bool
}

// Bed is a running multi-cluster bed. Its methods are not safe for
// concurrent use, except the pods' and nodes' traffic helpers.
type Bed struct {
	dir   string
	out   io.Writer
	bins  string
	run   string // this run's tag in namespace, cgroup and device names
	spawn *spawner
	fam   AddrFamily // Options.Family (DualStack: FamilyDualStack)
	// direct: Options.DirectPeers.
	direct bool

	fabric     string // the underlay's namespace
	cgroupRoot string // the bed's cgroup directory

	ledgerMu sync.Mutex // serializes appends to the ledger file
	mu       sync.Mutex // guards procs, cleanups, clusters
	procs    []*proc
	cleanups []func() error
	clusters []*Cluster

	started time.Time
}

// New builds the binaries (cached by the Go build cache), creates the
// underlay and returns an empty bed. Close it in every case.
func New(ctx context.Context, opt Options) (*Bed, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the bed needs root (network namespaces, BPF, bpffs, cgroups)")
	}
	for _, tool := range []string{"nsenter", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("the bed needs %s on PATH: %w", tool, err)
		}
	}
	fam := opt.Family
	if opt.DualStack {
		if fam != FamilyIPv4 && fam != FamilyDualStack {
			return nil, fmt.Errorf("bed options: DualStack and Family %v", fam)
		}
		fam = FamilyDualStack
	}
	if fam < FamilyIPv4 || fam > FamilyIPv6 {
		return nil, fmt.Errorf("bed options: unknown %v", fam)
	}
	out := opt.Log
	if out == nil {
		out = io.Discard
	}
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime's logger
	b := &Bed{dir: opt.Dir, out: out, run: fmt.Sprintf("%04d", os.Getpid()%10000), spawn: newSpawner(), started: time.Now(), fam: fam, direct: opt.DirectPeers}
	if err := os.MkdirAll(filepath.Join(b.dir, "logs"), 0o700); err != nil {
		b.spawn.close()
		return nil, err
	}
	b.sweep(ctx)
	bins, err := buildBinaries(ctx, b.logf)
	if err != nil {
		b.spawn.close()
		return nil, err
	}
	b.bins = bins
	if err := b.setupFabric(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Bed) logf(format string, args ...any) {
	fmt.Fprintf(b.out, "[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// Logf prints a line of progress with the bed's clock.
func (b *Bed) Logf(format string, args ...any) { b.logf(format, args...) }

// DualStack reports whether the bed's clusters are dual-stack
// (Options.DualStack).
func (b *Bed) DualStack() bool { return b.fam == FamilyDualStack }

// Family is the bed's address families (Options.Family).
func (b *Bed) Family() AddrFamily { return b.fam }

// Dir is where the bed keeps its files.
func (b *Bed) Dir() string { return b.dir }

func (b *Bed) onClose(f func() error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleanups = append(b.cleanups, f)
}

// Close stops every process and removes every namespace, mount and
// cgroup, in reverse order of creation. It returns what could not be
// removed.
func (b *Bed) Close() error {
	b.mu.Lock()
	procs, cleanups := b.procs, b.cleanups
	b.procs, b.cleanups = nil, nil
	b.mu.Unlock()
	var errs []error
	// Workloads and agents first, then control planes: each tier stops
	// in parallel.
	var mu sync.Mutex
	tier := func(match func(*proc) bool) {
		var wg sync.WaitGroup
		for _, p := range procs {
			if match(p) {
				wg.Go(func() {
					if err := p.stop(); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
	}
	control := func(p *proc) bool { return p.netns == "" }
	tier(func(p *proc) bool { return !control(p) })
	tier(control)
	for i := len(cleanups) - 1; i >= 0; i-- {
		if err := cleanups[i](); err != nil {
			errs = append(errs, err)
		}
	}
	b.spawn.close()
	if len(errs) == 0 {
		_ = os.Remove(b.ledgerPath())
	}
	return errors.Join(errs...)
}

// Cluster returns the cluster of that name.
func (b *Bed) Cluster(name string) *Cluster {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Clusters returns the bed's clusters in order of creation.
func (b *Bed) Clusters() []*Cluster {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*Cluster(nil), b.clusters...)
}

var (
	binsOnce sync.Once
	binsDir  string
	binsErr  error
)

// buildBinaries builds the project's binaries and the reference CNI
// plugins once per process.
func buildBinaries(ctx context.Context, logf func(string, ...any)) (string, error) {
	binsOnce.Do(func() {
		root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			binsErr = fmt.Errorf("find the module's directory (run from inside the repository): %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "clustermesh-bed-bin-")
		if err != nil {
			binsErr = err
			return
		}
		logf("building the binaries (clustermesh, clustermesh-apiserver, clustermesh-agent, clustermesh-cni, meshecho, ptp, host-local)")
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/",
			"./cmd/clustermesh", "./cmd/clustermesh-apiserver", "./cmd/clustermesh-agent", "./cmd/clustermesh-cni", "./cmd/meshecho",
			"github.com/containernetworking/plugins/plugins/main/ptp",
			"github.com/containernetworking/plugins/plugins/ipam/host-local")
		cmd.Dir = strings.TrimSpace(string(root))
		if out, err := cmd.CombinedOutput(); err != nil {
			binsErr = fmt.Errorf("build the binaries: %w\n%s", err, out)
			return
		}
		logf("    built in %.1fs into %s", time.Since(start).Seconds(), dir)
		binsDir = dir
	})
	return binsDir, binsErr
}

func (b *Bed) bin(name string) string { return filepath.Join(b.bins, name) }

// RemoveBinaries removes the binaries the bed built in this process; call
// it once every bed of the process is closed.
func RemoveBinaries() {
	if binsDir != "" {
		_ = os.RemoveAll(binsDir)
	}
}
