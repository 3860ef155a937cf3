package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The tc attachment of an endpoint where the kernel has no TCX (before
// 6.6), or when Options.TCAttach asks for it: a clsact qdisc with one
// cls_bpf filter (direct action) per direction. Filters are not links:
// they stay on the device after the process exits, run the program they
// were given until replaced, and are found again by name.

const (
	clsactPrio   = 1
	clsactHandle = 1
)

func clsactParent(p attachPoint) uint32 {
	if p.attach == ebpf.AttachTCXEgress {
		return netlink.HANDLE_MIN_EGRESS
	}
	return netlink.HANDLE_MIN_INGRESS
}

func clsactName(p attachPoint) string { return "clustermesh-" + p.suffix }

// useClsact reports whether endpoints are attached with clsact.
func (d *Datapath) useClsact() bool {
	return d.opts.TCAttach == TCAttachClsact || d.tcxMissing
}

// clsactAttach puts prog on ifindex's hook p (in the calling thread's
// network namespace), replacing a previous program atomically.
func clsactAttach(ifindex int, p attachPoint, prog *ebpf.Program) error {
	q := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT,
	}}
	if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex, Parent: clsactParent(p), Handle: netlink.MakeHandle(0, clsactHandle),
			Protocol: unix.ETH_P_ALL, Priority: clsactPrio,
		},
		Fd: prog.FD(), Name: clsactName(p), DirectAction: true,
	}
	if err := netlink.FilterReplace(f); err != nil {
		return fmt.Errorf("add cls_bpf filter: %w", err)
	}
	return nil
}

// clsactDetach removes the filter of hook p; a missing filter or device is
// not an error.
func clsactDetach(ifindex int, p attachPoint) error {
	f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{
		LinkIndex: ifindex, Parent: clsactParent(p), Handle: netlink.MakeHandle(0, clsactHandle),
		Protocol: unix.ETH_P_ALL, Priority: clsactPrio,
	}}
	err := netlink.FilterDel(f)
	if err == nil || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EINVAL) {
		return nil
	}
	return fmt.Errorf("delete cls_bpf filter: %w", err)
}

// clsactRuns reports whether hook p of ifindex runs prog (a filter left by
// a previous process runs its own program: not attached, until replaced).
func clsactRuns(ifindex int, p attachPoint, prog *ebpf.Program) bool {
	info, err := prog.Info()
	if err != nil {
		return false
	}
	id, ok := info.ID()
	if !ok {
		return false
	}
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return false
	}
	filters, err := netlink.FilterList(l, clsactParent(p))
	if err != nil {
		return false
	}
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Name == clsactName(p) && bf.Id == int(id) {
			return true
		}
	}
	return false
}
