package localapi

import (
	"cmp"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/clustermesh/clustermesh/agent/desired"
	"github.com/clustermesh/clustermesh/services"
)

// ServiceDetail is one element of GET /v1/services/detail: a Service of
// the local cluster with its global-service settings, every candidate
// backend (local ones with their conditions, those the peers export), and
// which of them new connections use now, and why.
type ServiceDetail struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Global    bool   `json:"global"`
	Shared    bool   `json:"shared"`
	// Affinity is none, local or remote.
	Affinity  string          `json:"affinity"`
	Frontends []string        `json:"frontends"` // addr:port/protocol
	Backends  []BackendDetail `json:"backends"`
	// Rejected counts, by cluster, the backends a peer exported at
	// addresses it does not own (outside its nodes' pod CIDRs and
	// addresses): never used.
	Rejected map[string]int `json:"rejected,omitempty"`
}

// BackendDetail is a candidate backend of a ServiceDetail.
type BackendDetail struct {
	Cluster     string   `json:"cluster"`
	Address     string   `json:"address"`
	Ports       []string `json:"ports"` // [name=]port/protocol
	Ready       bool     `json:"ready"`
	Terminating bool     `json:"terminating,omitempty"`
	// Selected: new connections use it (services.Merge's selection, the
	// one the datapath holds).
	Selected bool   `json:"selected"`
	Why      string `json:"why"`
}

// ServicesDetail is what GET /v1/services/detail answers, sorted by
// namespace and name.
func (a *API) ServicesDetail() []ServiceDetail {
	sn := a.cfg.State.Snapshot()
	out := []ServiceDetail{}
	for _, ls := range sn.LocalServices() {
		remotes, rejected := desired.RemoteCopies(sn, a.cfg.Cluster, ls)
		selected := map[netip.Addr]bool{}
		for _, b := range services.Merge(a.cfg.Cluster, ls.Namespace, ls.Name, ls.Backends, ls.Annotations, remotes) {
			selected[b.Addr] = true
		}
		d := ServiceDetail{Namespace: ls.Namespace, Name: ls.Name, Global: ls.Annotations.Global, Shared: ls.Annotations.Shared,
			Affinity: cmp.Or(string(ls.Annotations.Affinity), "none"), Frontends: []string{}, Backends: []BackendDetail{}}
		if len(rejected) > 0 {
			d.Rejected = rejected
		}
		for _, fe := range ls.Frontends {
			d.Frontends = append(d.Frontends, fmt.Sprintf("%s/%s", netip.AddrPortFrom(fe.Addr, fe.Port), fe.Protocol))
		}
		used := map[netip.Addr]string{} // address → the cluster whose backend has it
		ready := readyFamilies(ls.Backends)
		for _, b := range ls.Backends {
			addr := b.Addr.Unmap()
			bd := BackendDetail{Cluster: a.cfg.Cluster, Address: addr.String(), Ports: ports(b), Ready: b.Ready, Terminating: b.Terminating,
				Selected: selected[addr]}
			_, dup := used[addr]
			switch {
			case dup:
				bd.Why = "the same address is listed earlier"
			case !b.Ready:
				bd.Why = "not ready"
			case b.Terminating:
				bd.Why = "terminating"
			case bd.Selected && ls.Annotations.Affinity == services.AffinityRemote:
				bd.Why = "local and ready; affinity remote, and no remote backend of its family is ready"
			case bd.Selected:
				bd.Why = "local and ready"
			case ls.Annotations.Affinity == services.AffinityRemote:
				bd.Why = "affinity remote: remote backends of its family are ready"
			}
			if !dup {
				used[addr] = a.cfg.Cluster
			}
			d.Backends = append(d.Backends, bd)
		}
		for _, cs := range remotes {
			for _, b := range services.RemoteBackends(cs) {
				bd := BackendDetail{Cluster: cs.Cluster, Address: b.Addr.String(), Ports: ports(b), Ready: true, Selected: selected[b.Addr] && used[b.Addr] == ""}
				switch owner, dup := used[b.Addr]; {
				case dup:
					bd.Why = "the address is also a backend of " + owner + ", which is used"
				case !cs.Shared:
					bd.Why = "cluster " + cs.Cluster + " does not share the Service"
				case bd.Selected && ls.Annotations.Affinity == services.AffinityLocal:
					bd.Why = "exported by " + cs.Cluster + "; affinity local, and no local backend of its family is ready"
				case bd.Selected:
					bd.Why = "exported ready by " + cs.Cluster
				case ls.Annotations.Affinity == services.AffinityLocal && ready[family(b.Addr)]:
					bd.Why = "affinity local: local backends of its family are ready"
				default:
					bd.Why = "not selected"
				}
				if _, dup := used[b.Addr]; !dup && cs.Shared {
					used[b.Addr] = cs.Cluster
				}
				d.Backends = append(d.Backends, bd)
			}
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(x, y ServiceDetail) int {
		return cmp.Or(strings.Compare(x.Namespace, y.Namespace), strings.Compare(x.Name, y.Name))
	})
	return out
}

// readyFamilies reports which address families (4, 6) have a ready local
// backend.
func readyFamilies(local []services.Backend) map[int]bool {
	out := map[int]bool{}
	for _, b := range local {
		if b.Ready && !b.Terminating && b.Addr.IsValid() {
			out[family(b.Addr.Unmap())] = true
		}
	}
	return out
}

func family(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

func ports(b services.Backend) []string {
	out := make([]string, 0, len(b.Ports))
	for name, p := range b.Ports {
		s := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if name != "" {
			s = name + "=" + s
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func (a *API) getServicesDetail(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, a.ServicesDetail())
}
