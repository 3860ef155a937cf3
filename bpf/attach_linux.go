package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Links are pinned under PinDir/links with names that say what they attach:
//
//	tcx_<ifindex>_ingress, tcx_<ifindex>_egress
//	cgroup_<inode>_<hook>   (hook: connect4, sendmsg4, recvmsg4, getpeername4,
//	                         connect6, sendmsg6, recvmsg6, getpeername6, release)
//
// Load finds the program of a pinned link from its name.

type attachPoint struct {
	suffix string
	attach ebpf.AttachType
}

var tcxPoints = []attachPoint{
	{"ingress", ebpf.AttachTCXIngress},
	{"egress", ebpf.AttachTCXEgress},
}

var cgroupPoints = []attachPoint{
	{"connect4", ebpf.AttachCGroupInet4Connect},
	{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg},
	{"recvmsg4", ebpf.AttachCGroupUDP4Recvmsg},
	{"getpeername4", ebpf.AttachCgroupInet4GetPeername},
	{"connect6", ebpf.AttachCGroupInet6Connect},
	{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg},
	{"recvmsg6", ebpf.AttachCGroupUDP6Recvmsg},
	{"getpeername6", ebpf.AttachCgroupInet6GetPeername},
	{"release", ebpf.AttachCgroupInetSockRelease},
}

func (d *Datapath) linkDir() string { return filepath.Join(d.opts.PinDir, "links") }

// program returns the program for a link pin name.
func (d *Datapath) program(name string) (*ebpf.Program, bool) {
	i := strings.LastIndexByte(name, '_')
	if i < 0 {
		return nil, false
	}
	kind, hook := name[:strings.IndexByte(name, '_')], name[i+1:]
	switch {
	case kind == "tcx" && hook == "ingress":
		return d.tc.FromEndpoint, true
	case kind == "tcx" && hook == "egress":
		return d.tc.ToEndpoint, true
	case kind == "cgroup" && hook == "connect4":
		return d.sock.SockConnect4, true
	case kind == "cgroup" && hook == "sendmsg4":
		return d.sock.SockSendmsg4, true
	case kind == "cgroup" && hook == "recvmsg4":
		return d.sock.SockRecvmsg4, true
	case kind == "cgroup" && hook == "getpeername4":
		return d.sock.SockGetpeername4, true
	case kind == "cgroup" && hook == "connect6":
		return d.sock.SockConnect6, true
	case kind == "cgroup" && hook == "sendmsg6":
		return d.sock.SockSendmsg6, true
	case kind == "cgroup" && hook == "recvmsg6":
		return d.sock.SockRecvmsg6, true
	case kind == "cgroup" && hook == "getpeername6":
		return d.sock.SockGetpeername6, true
	case kind == "cgroup" && hook == "release":
		return d.sock.SockRelease, true
	}
	return nil, false
}

// restoreLinks opens the links pinned by a previous process and moves them
// to the programs just loaded. A link whose device or cgroup is gone is
// unpinned.
func (d *Datapath) restoreLinks() error {
	if err := os.MkdirAll(d.linkDir(), 0o700); err != nil {
		return fmt.Errorf("create link directory: %w", err)
	}
	entries, err := os.ReadDir(d.linkDir())
	if err != nil {
		return fmt.Errorf("read link directory: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range entries {
		path := filepath.Join(d.linkDir(), e.Name())
		prog, ok := d.program(e.Name())
		if !ok {
			return fmt.Errorf("unknown pinned link %s", path)
		}
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			return fmt.Errorf("open pinned link %s: %w", path, err)
		}
		if err := l.Update(prog); err != nil {
			// The device or cgroup of a defunct link is gone.
			if errors.Is(err, syscall.ENOLINK) || errors.Is(err, syscall.ENOENT) {
				_ = l.Unpin()
				_ = l.Close()
				continue
			}
			_ = l.Close()
			return fmt.Errorf("move pinned link %s to the new program: %w", path, err)
		}
		d.links[e.Name()] = l
	}
	return nil
}

// attach attaches prog unless a link of that name exists, and pins it.
func (d *Datapath) attach(name string, prog *ebpf.Program, attach func() (link.Link, error)) error {
	if d.closed {
		return ErrClosed
	}
	if l, ok := d.links[name]; ok {
		// Already attached (maybe by a previous process): make sure it runs
		// the current program.
		err := l.Update(prog)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ENOLINK) && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("update link %s: %w", name, err)
		}
		// Its device is gone (and the name is taken by another one now):
		// attach anew.
		_ = l.Unpin()
		_ = l.Close()
		delete(d.links, name)
	}
	l, err := attach()
	if err != nil {
		return err
	}
	if err := l.Pin(filepath.Join(d.linkDir(), name)); err != nil {
		_ = l.Close()
		return fmt.Errorf("pin link %s: %w", name, err)
	}
	d.links[name] = l
	return nil
}

func (d *Datapath) detach(name string) error {
	l, ok := d.links[name]
	if !ok {
		return nil
	}
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("unpin link %s: %w", name, err)
	}
	delete(d.links, name)
	if err := l.Close(); err != nil {
		return fmt.Errorf("close link %s: %w", name, err)
	}
	return nil
}

func tcxName(ifindex int, p attachPoint) string {
	return "tcx_" + strconv.Itoa(ifindex) + "_" + p.suffix
}

// AttachEndpoint enforces the policy of endpoint epID on the host-side
// interface ifindex (in the network namespace of the calling thread), in
// both directions: with TCX links, or a clsact qdisc and cls_bpf filters
// where the kernel has no TCX or Options.TCAttach says so. Attaching again is a no-op apart from updating epID.
func (d *Datapath) AttachEndpoint(ifindex int, epID uint16) error {
	if ifindex <= 0 {
		return fmt.Errorf("attach endpoint %d: invalid ifindex %d", epID, ifindex)
	}
	if err := d.tc.Endpoints.Update(uint32(ifindex), epID, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("attach endpoint %d: map ifindex %d: %w", epID, ifindex, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range tcxPoints {
		name := tcxName(ifindex, p)
		prog, _ := d.program(name)
		var err error
		if !d.useClsact() {
			err = d.attach(name, prog, func() (link.Link, error) {
				return link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: p.attach})
			})
			if errors.Is(err, ebpf.ErrNotSupported) && d.opts.TCAttach == TCAttachAuto {
				d.tcxMissing = true // this kernel has no TCX: clsact from now on
			}
		}
		if d.useClsact() {
			err = clsactAttach(ifindex, p, prog)
		}
		if err != nil {
			return fmt.Errorf("attach endpoint %d to ifindex %d (%s): %w", epID, ifindex, p.suffix, err)
		}
	}
	return nil
}

// AttachedEndpoints returns the interfaces attached in both directions
// (with clsact: in the calling thread's network namespace), with their
// endpoint IDs.
func (d *Datapath) AttachedEndpoints() (map[int]uint16, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[int]uint16{}
	var (
		ifindex uint32
		ep      uint16
	)
	it := d.tc.Endpoints.Iterate()
	for it.Next(&ifindex, &ep) {
		attached := true
		for _, p := range tcxPoints {
			name := tcxName(int(ifindex), p)
			if d.useClsact() {
				prog, _ := d.program(name)
				attached = attached && clsactRuns(int(ifindex), p, prog)
				continue
			}
			l, ok := d.links[name]
			if !ok || !tcxLive(l) {
				attached = false
			}
		}
		if attached {
			out[int(ifindex)] = ep
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list attached endpoints: %w", err)
	}
	return out, nil
}

// tcxLive reports whether a TCX link is still attached to a device (its
// device is 0 once the device is gone).
func tcxLive(l link.Link) bool {
	info, err := l.Info()
	if err != nil {
		return false
	}
	tcx := info.TCX()
	return tcx != nil && tcx.Ifindex != 0
}

// DetachEndpoint removes the programs from ifindex (clsact filters: in the
// calling thread's network namespace). Detaching an interface that is not
// attached succeeds.
func (d *Datapath) DetachEndpoint(ifindex int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range tcxPoints {
		if err := d.detach(tcxName(ifindex, p)); err != nil {
			return fmt.Errorf("detach ifindex %d: %w", ifindex, err)
		}
		if d.useClsact() {
			if err := clsactDetach(ifindex, p); err != nil {
				return fmt.Errorf("detach ifindex %d (%s): %w", ifindex, p.suffix, err)
			}
		}
	}
	if err := d.tc.Endpoints.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("detach ifindex %d: %w", ifindex, err)
	}
	return nil
}

func cgroupID(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() {
		return 0, fmt.Errorf("cgroup %s: not a cgroup directory", path)
	}
	return st.Ino, nil
}

func cgroupName(id uint64, p attachPoint) string {
	return "cgroup_" + strconv.FormatUint(id, 10) + "_" + p.suffix
}

// AttachCgroup load-balances services for the sockets of the processes in
// the cgroup v2 directory path (and its descendants).
func (d *Datapath) AttachCgroup(path string) error {
	id, err := cgroupID(path)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range cgroupPoints {
		name := cgroupName(id, p)
		prog, _ := d.program(name)
		err := d.attach(name, prog, func() (link.Link, error) {
			return link.AttachCgroup(link.CgroupOptions{Path: path, Attach: p.attach, Program: prog})
		})
		if err != nil {
			return fmt.Errorf("attach cgroup %s (%s): %w", path, p.suffix, err)
		}
	}
	return nil
}

// DetachCgroup removes the load balancer from the cgroup at path.
func (d *Datapath) DetachCgroup(path string) error {
	id, err := cgroupID(path)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range cgroupPoints {
		if err := d.detach(cgroupName(id, p)); err != nil {
			return fmt.Errorf("detach cgroup %s: %w", path, err)
		}
	}
	return nil
}
