package bpfdp

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
)

// ipcacheTable is the ipcache: bpf.IPCache. The kernel keeps an entry's
// identity and tunnel endpoint, not its cluster (see KeptIPCache). An
// Update of a held prefix replaces its value in place.
type ipcacheTable struct {
	c *bpf.IPCache
}

// checkPrefix rejects prefixes the kernel would store under another key
// (not masked, IPv4-mapped IPv6): List would return that other key and a
// reconciler would then prune the entry it just wrote.
func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return fmt.Errorf("prefix %v: use the masked form, and IPv4 prefixes as such: %w", p, ErrNotCanonical)
	}
	return nil
}

// Update implements datapath.Table.
func (t *ipcacheTable) Update(_ context.Context, p netip.Prefix, e datapath.IPCacheEntry) error {
	if err := checkPrefix(p); err != nil {
		return fmt.Errorf("ipcache update: %w", err)
	}
	if e.HostIP.IsValid() && (e.HostIP.IsUnspecified() || e.HostIP.Zone() != "") {
		return fmt.Errorf("ipcache update %v: host IP %v: a tunnel endpoint is a node's address (IPv4 or IPv6, no zone): %w", p, e.HostIP, ErrNotSupported)
	}
	if err := t.c.Update(p, bpf.IPCacheValue{Identity: uint32(e.Identity), HostIP: e.HostIP}); err != nil {
		return fmt.Errorf("ipcache update: %w", err)
	}
	return nil
}

// Delete implements datapath.Table. Prefixes the kernel cannot hold are
// absent.
func (t *ipcacheTable) Delete(_ context.Context, p netip.Prefix) error {
	if checkPrefix(p) != nil {
		return nil
	}
	if err := t.c.Delete(p); err != nil {
		return fmt.Errorf("ipcache delete: %w", err)
	}
	return nil
}

// List implements datapath.Table: every prefix with its identity and tunnel
// endpoint; Cluster is "".
func (t *ipcacheTable) List(context.Context) (map[netip.Prefix]datapath.IPCacheEntry, error) {
	held, err := t.c.List()
	if err != nil {
		return nil, fmt.Errorf("ipcache list: %w", err)
	}
	out := make(map[netip.Prefix]datapath.IPCacheEntry, len(held))
	for p, e := range held {
		out[p] = datapath.IPCacheEntry{Identity: identity.NumericIdentity(e.Identity), HostIP: e.HostIP}
	}
	return out, nil
}

// cidrsTable is bpf.CIDRIdentities, with the ipcache's rule for keys.
type cidrsTable struct {
	c *bpf.CIDRIdentities
}

// Update implements datapath.Table.
func (t *cidrsTable) Update(_ context.Context, p netip.Prefix, id identity.NumericIdentity) error {
	if err := checkPrefix(p); err != nil {
		return fmt.Errorf("cidr identity update: %w", err)
	}
	if err := t.c.Update(p, uint32(id)); err != nil {
		return fmt.Errorf("cidr identity update: %w", err)
	}
	return nil
}

// Delete implements datapath.Table. Prefixes the kernel cannot hold are
// absent.
func (t *cidrsTable) Delete(_ context.Context, p netip.Prefix) error {
	if checkPrefix(p) != nil {
		return nil
	}
	if err := t.c.Delete(p); err != nil {
		return fmt.Errorf("cidr identity delete: %w", err)
	}
	return nil
}

// List implements datapath.Table.
func (t *cidrsTable) List(context.Context) (map[netip.Prefix]identity.NumericIdentity, error) {
	held, err := t.c.List()
	if err != nil {
		return nil, fmt.Errorf("cidr identity list: %w", err)
	}
	out := make(map[netip.Prefix]identity.NumericIdentity, len(held))
	for p, id := range held {
		out[p] = identity.NumericIdentity(id)
	}
	return out, nil
}
