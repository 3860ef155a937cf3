package desired

import (
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
)

// CIDRIdentities is the datapath's table of the policies' prefixes and
// their CIDR identities, for rules by address (every one, whatever claims
// the prefix in the ipcache).
func CIDRIdentities(sn *state.Snapshot) map[netip.Prefix]identity.NumericIdentity {
	rows := sn.CIDRIdentities()
	out := make(map[netip.Prefix]identity.NumericIdentity, len(rows))
	for _, r := range rows {
		out[r.Prefix] = r.ID
	}
	return out
}

// NewCIDRIdentitiesSource returns the CIDR identities' incremental source
// (see Source): a row's change touches its own prefix.
func NewCIDRIdentitiesSource(st *state.State) *Source[netip.Prefix, identity.NumericIdentity] {
	return NewSource(st, cidrsJoin{}, state.TableCIDRIdentities)
}

// cidrsJoin is CIDRIdentities as a Join.
type cidrsJoin struct{}

func (cidrsJoin) All(sn *state.Snapshot) map[netip.Prefix]identity.NumericIdentity {
	return CIDRIdentities(sn)
}

func (cidrsJoin) At(sn *state.Snapshot, p netip.Prefix) (identity.NumericIdentity, bool) {
	return sn.CIDRIdentity(p)
}

func (cidrsJoin) Keys(_ *state.Snapshot, c state.Change, keys map[netip.Prefix]struct{}) {
	for _, raw := range []any{c.Before, c.After} {
		if r, ok := raw.(*state.CIDRIdentityRow); ok {
			keys[r.Prefix] = struct{}{}
		}
	}
}
