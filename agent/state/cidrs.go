package state

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/clustermesh/clustermesh/identity"
)

// TableCIDRIdentities holds the CIDR identities of the policies: the
// prefixes the policies name (and their except holes) with the local
// identity each got. The policy controller writes it. It is not part of the
// ipcache table: a CIDR identity is what an address of the prefix has only
// when nothing more specific (a pod, a node, a peer's entry) claims it, so
// a policy naming a pod's /32 never takes the pod's identity away; the
// desired ipcache puts it below every other source (desired.IPCache), and
// rules by address look addresses up in it (desired.CIDRIdentities).
const TableCIDRIdentities = "cidridentities"

// CIDRIdentityRow is a row of the cidridentities table.
type CIDRIdentityRow struct {
	Prefix netip.Prefix // masked, unmapped
	ID     identity.NumericIdentity
}

// cidrIndex indexes a CIDR identity row by its prefix (prefixKey).
type cidrIndex struct{}

func (cidrIndex) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*CIDRIdentityRow)
	if !ok {
		return false, nil, fmt.Errorf("cidr index: unexpected row type %T", raw)
	}
	return r.Prefix.IsValid(), prefixKey(r.Prefix), nil
}

func (cidrIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, errors.New("cidr index: want one argument")
	}
	p, ok := args[0].(netip.Prefix)
	if !ok || !p.IsValid() {
		return nil, fmt.Errorf("cidr index: argument is a %T, want a valid netip.Prefix", args[0])
	}
	return prefixKey(p.Masked()), nil
}

// UpsertCIDRIdentity sets the CIDR identity of prefix p.
func (w *WriteTxn) UpsertCIDRIdentity(p netip.Prefix, id identity.NumericIdentity) error {
	p, err := normalizePrefix(p)
	if err != nil {
		return fmt.Errorf("cidr identity: %w", err)
	}
	if id == 0 {
		return fmt.Errorf("cidr identity of %v: identity 0", p)
	}
	return upsertChanged(w, TableCIDRIdentities, &CIDRIdentityRow{Prefix: p, ID: id}, p)
}

// DeleteCIDRIdentity removes the CIDR identity of prefix p; absent is not
// an error.
func (w *WriteTxn) DeleteCIDRIdentity(p netip.Prefix) error {
	p, err := normalizePrefix(p)
	if err != nil {
		return nil // never stored
	}
	raw, err := w.txn.First(TableCIDRIdentities, IndexID, p)
	if err != nil || raw == nil {
		return err
	}
	return w.delete(TableCIDRIdentities, raw)
}

// CIDRIdentity returns the CIDR identity of exactly prefix p.
func (sn *Snapshot) CIDRIdentity(p netip.Prefix) (identity.NumericIdentity, bool) {
	p, err := normalizePrefix(p)
	if err != nil {
		return 0, false
	}
	r, err := first[CIDRIdentityRow](sn.txn, TableCIDRIdentities, IndexID, p)
	if err != nil || r == nil {
		return 0, false
	}
	return r.ID, true
}

// CIDRIdentities returns every CIDR identity row, in prefix order.
func (sn *Snapshot) CIDRIdentities() []CIDRIdentityRow {
	return collect[CIDRIdentityRow](sn.txn, TableCIDRIdentities, IndexID)
}
