package localapi

import "sort"

// PrefixEntry is one element of GET /v1/ipcache: a row of the agent's
// ipcache table (state.IPCacheRow) in the API's JSON form.
type PrefixEntry struct {
	Prefix   string `json:"prefix"`
	Identity uint32 `json:"identity"`
	HostIP   string `json:"hostIP,omitempty"`
	Cluster  string `json:"cluster"`
}

// PolicyCIDRCluster is the cluster GET /v1/ipcache gives the CIDR
// identities of the policies.
const PolicyCIDRCluster = "policy:cidr"

// IPCache is what GET /v1/ipcache answers, sorted by prefix: the ipcache
// rows, and the CIDR identities of the policies (cluster
// PolicyCIDRCluster).
func (a *API) IPCache() []PrefixEntry {
	sn := a.cfg.State.Snapshot()
	rows, cidrs := sn.IPCache(), sn.CIDRIdentities()
	out := make([]PrefixEntry, 0, len(rows)+len(cidrs))
	for _, r := range rows {
		e := PrefixEntry{Prefix: r.Prefix.String(), Identity: uint32(r.ID), Cluster: r.Cluster}
		if r.HostIP.IsValid() {
			e.HostIP = r.HostIP.String()
		}
		out = append(out, e)
	}
	for _, r := range cidrs {
		out = append(out, PrefixEntry{Prefix: r.Prefix.String(), Identity: uint32(r.ID), Cluster: PolicyCIDRCluster})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix < out[j].Prefix })
	return out
}

// IdentityEntry is one element of GET /v1/identities.
type IdentityEntry struct {
	ID      uint32 `json:"id"`
	Cluster string `json:"cluster"`
	Labels  string `json:"labels"`
}

// Identities is what GET /v1/identities answers, sorted by ID.
func (a *API) Identities() []IdentityEntry {
	rows := a.cfg.State.Snapshot().Identities()
	out := make([]IdentityEntry, 0, len(rows))
	for _, r := range rows {
		out = append(out, IdentityEntry{ID: uint32(r.ID), Cluster: r.Cluster, Labels: r.LabelsKey})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// EndpointEntry is one element of GET /v1/endpoints: a pod of this node.
type EndpointEntry struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	IPs       []string `json:"ips"`
	Identity  uint32   `json:"identity"`
	Labels    string   `json:"labels"`
}

// Endpoints is what GET /v1/endpoints answers, sorted by namespace and
// name.
func (a *API) Endpoints() []EndpointEntry {
	rows := a.cfg.State.Snapshot().Endpoints()
	out := make([]EndpointEntry, 0, len(rows))
	for _, r := range rows {
		e := EndpointEntry{Namespace: r.Namespace, Name: r.Name, IPs: []string{}, Identity: uint32(r.ID), Labels: r.Labels.SortedKVStoreString()}
		for _, ip := range r.IPs {
			e.IPs = append(e.IPs, ip.String())
		}
		out = append(out, e)
	}
	return out
}
