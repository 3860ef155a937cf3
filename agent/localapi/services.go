package localapi

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/clustermesh/clustermesh/agent/desired"
)

// ServiceEntry is one element of GET /v1/services: a frontend and the
// backends new connections to it use.
type ServiceEntry struct {
	Namespace string          `json:"namespace"`
	Name      string          `json:"name"`
	Frontend  string          `json:"frontend"` // addr:port/protocol
	Backends  []BackendTarget `json:"backends"`
}

// BackendTarget is a selected backend of a ServiceEntry.
type BackendTarget struct {
	Address string `json:"address"` // addr:port
	Cluster string `json:"cluster"`
}

// Services is what GET /v1/services answers, sorted by namespace, name and
// frontend.
func (a *API) Services() []ServiceEntry {
	frontends := desired.Services(a.cfg.State.Snapshot(), a.cfg.Cluster)
	out := make([]ServiceEntry, 0, len(frontends))
	for k, svc := range frontends {
		e := ServiceEntry{Namespace: svc.Namespace, Name: svc.Name, Backends: []BackendTarget{},
			Frontend: fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.Addr, k.Port), k.Protocol)}
		for _, b := range svc.Backends {
			e.Backends = append(e.Backends, BackendTarget{Address: netip.AddrPortFrom(b.Addr, b.Port).String(), Cluster: b.Cluster})
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if x.Namespace != y.Namespace {
			return x.Namespace < y.Namespace
		}
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		return x.Frontend < y.Frontend
	})
	return out
}
