package state

import (
	"errors"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// TablePolicies holds the computed policy of every local endpoint, keyed by
// the endpoint ("namespace/name"). The policy controller writes it; the
// policy reconciler reads it.
const TablePolicies = "policies"

// EndpointPolicyRow is a row of the policies table.
type EndpointPolicyRow struct {
	Key string
	// DatapathID keys the endpoint's kernel maps; stable while the
	// endpoint exists.
	DatapathID uint16
	Policy     datapath.EndpointPolicy
}

// UpsertEndpointPolicy sets the policy of endpoint r.Key.
func (w *WriteTxn) UpsertEndpointPolicy(r EndpointPolicyRow) error {
	if r.Key == "" || r.DatapathID == 0 {
		return errors.New("endpoint policy without a key or a datapath ID")
	}
	return upsertChanged(w, TablePolicies, &r, r.Key)
}

// DeleteEndpointPolicy removes the policy of endpoint key.
func (w *WriteTxn) DeleteEndpointPolicy(key string) error {
	return w.deleteByID(TablePolicies, key)
}

// EndpointPolicies returns every endpoint's policy, sorted by key.
func (sn *Snapshot) EndpointPolicies() []EndpointPolicyRow {
	return collect[EndpointPolicyRow](sn.txn, TablePolicies, IndexID)
}

// EndpointPolicy returns the policy row of endpoint key ("namespace/name").
func (sn *Snapshot) EndpointPolicy(key string) (EndpointPolicyRow, bool) {
	r, err := first[EndpointPolicyRow](sn.txn, TablePolicies, IndexID, key)
	if err != nil || r == nil {
		return EndpointPolicyRow{}, false
	}
	return *r, true
}

// IdentityRows calls fn with each identity row; rows are immutable, so an
// unchanged identity is the same pointer in every snapshot (a cheap way to
// find what changed).
func (sn *Snapshot) IdentityRows(fn func(*IdentityRow)) {
	eachIdentity(sn.txn, fn)
}

// EndpointRows calls fn with each endpoint row (immutable, as IdentityRows).
func (sn *Snapshot) EndpointRows(fn func(*Endpoint)) {
	it, err := sn.txn.Get(TableEndpoints, IndexID)
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if r, ok := raw.(*Endpoint); ok {
			fn(r)
		}
	}
}

// TableNamedPorts holds, for each container port name used by a pod of the
// local cluster, the ports and protocols it stands for (egress rules to a
// named port resolve through it).
const TableNamedPorts = "namedports"

// NamedPortRow is a row of the namedports table.
type NamedPortRow struct {
	Name  string
	Ports []schema.NamedPort // sorted, distinct
}

// SetNamedPort sets (or, with no ports, removes) the ports of name.
func (w *WriteTxn) SetNamedPort(name string, ports []schema.NamedPort) error {
	if len(ports) == 0 {
		return w.deleteByID(TableNamedPorts, name)
	}
	return upsertChanged(w, TableNamedPorts, &NamedPortRow{Name: name, Ports: ports}, name)
}

// NamedPorts returns the named ports of the local cluster's pods by name.
func (sn *Snapshot) NamedPorts() map[string][]schema.NamedPort {
	out := map[string][]schema.NamedPort{}
	for _, r := range collect[NamedPortRow](sn.txn, TableNamedPorts, IndexID) {
		out[r.Name] = r.Ports
	}
	return out
}
