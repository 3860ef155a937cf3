package state

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Index names of the address indexes.
const (
	// IndexAddr (nodes, attachments, local services) is every address of
	// the row: a node's addresses, an attachment's IPs, a Service's
	// frontend addresses. It is not unique.
	IndexAddr = "addr"
)

// addrIndex indexes a row by each of its addresses (unmapped, without
// zone): the family, then the address bytes. Keys of one family have one
// length, so an address's key is never the prefix of another's.
type addrIndex struct{}

func addrKey(a netip.Addr) []byte {
	a = a.Unmap().WithZone("")
	b := a.AsSlice()
	return append([]byte{familyByte(a.Is6())}, b...)
}

func (addrIndex) FromObject(raw any) (bool, [][]byte, error) {
	var keys [][]byte
	switch r := raw.(type) {
	case *NodeRow:
		for _, a := range nodeAddrs(r.Node) {
			keys = append(keys, addrKey(a))
		}
	case *AttachmentRow:
		for _, a := range r.IPs {
			if a.IsValid() {
				keys = append(keys, addrKey(a))
			}
		}
	case *LocalService:
		seen := map[netip.Addr]bool{} // one key per address, whatever its ports
		for _, fe := range r.Frontends {
			if a := fe.Addr.Unmap().WithZone(""); a.IsValid() && !seen[a] {
				seen[a] = true
				keys = append(keys, addrKey(a))
			}
		}
	default:
		return false, nil, fmt.Errorf("address index: unexpected row type %T", raw)
	}
	return len(keys) > 0, keys, nil
}

func (addrIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, errors.New("address index: want one argument")
	}
	a, ok := args[0].(netip.Addr)
	if !ok || !a.IsValid() {
		return nil, fmt.Errorf("address index: argument is a %T, want a valid netip.Addr", args[0])
	}
	return addrKey(a), nil
}

// nodeAddrs returns the valid addresses of a node, unmapped.
func nodeAddrs(n schema.Node) []netip.Addr {
	out := make([]netip.Addr, 0, len(n.IPAddresses))
	for _, a := range n.IPAddresses {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// Addrs returns the valid addresses of the node, unmapped (nil for nil).
func (r *NodeRow) Addrs() []netip.Addr {
	if r == nil {
		return nil
	}
	return nodeAddrs(r.Node)
}

// NodesWithAddr returns the nodes that have addr among their addresses,
// sorted by cluster then name (as Nodes).
func (sn *Snapshot) NodesWithAddr(addr netip.Addr) []NodeRow {
	if !addr.IsValid() {
		return nil
	}
	return collect[NodeRow](sn.txn, TableNodes, IndexAddr, addr)
}

// AttachmentsWithIP returns the attachments that have ip among their IPs,
// sorted by key (as Attachments).
func (sn *Snapshot) AttachmentsWithIP(ip netip.Addr) []AttachmentRow {
	if !ip.IsValid() {
		return nil
	}
	return collect[AttachmentRow](sn.txn, TableAttachments, IndexAddr, ip)
}

// LocalServicesWithAddr returns the local Services that have a frontend
// at addr, sorted by namespace and name (as LocalServices).
func (sn *Snapshot) LocalServicesWithAddr(addr netip.Addr) []LocalService {
	if !addr.IsValid() {
		return nil
	}
	return collect[LocalService](sn.txn, TableLocalServices, IndexAddr, addr)
}

// IPCacheEntry returns the ipcache row of exactly prefix (masked,
// unmapped), not a longest-prefix match (see LookupIP).
func (sn *Snapshot) IPCacheRow(prefix netip.Prefix) (IPCacheRow, bool) {
	if !prefix.IsValid() {
		return IPCacheRow{}, false
	}
	return sn.lookupPrefix(prefix)
}
