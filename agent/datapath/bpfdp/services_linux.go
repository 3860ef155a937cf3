package bpfdp

import (
	"context"
	"fmt"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
)

// servicesTable is the services table: bpf.Services holds frontends and
// their backends' addresses and ports (see KeptService). An Update of a
// held frontend rewrites its slots in place (bpf.Services.Update: never an
// empty or missing slot), and the socket load balancer translates at
// connect time, so established connections never look at it.
type servicesTable struct {
	s *bpf.Services
}

var protocols = map[string]uint8{"TCP": bpf.ProtoTCP, "UDP": bpf.ProtoUDP}

// frontend returns the kernel frontend of k, or an error saying why the
// eBPF datapath cannot hold it (SCTP; an address not in canonical form,
// which List would return as another key: IPv4-mapped, with a zone).
func frontend(k datapath.ServiceKey) (bpf.Frontend, error) {
	if !k.Addr.IsValid() || k.Addr.Is4In6() || k.Addr.Zone() != "" {
		return bpf.Frontend{}, fmt.Errorf("frontend %v: give an IPv4 address as such, an IPv6 one without zone: %w", k.Addr, ErrNotCanonical)
	}
	proto, ok := protocols[k.Protocol]
	if !ok {
		return bpf.Frontend{}, fmt.Errorf("frontend protocol %q: socket load balancing supports TCP and UDP: %w", k.Protocol, ErrNotSupported)
	}
	return bpf.Frontend{Addr: k.Addr, Port: k.Port, Proto: proto}, nil
}

func serviceKey(fe bpf.Frontend) datapath.ServiceKey {
	k := datapath.ServiceKey{Addr: fe.Addr, Port: fe.Port, Protocol: fmt.Sprintf("proto-%d", fe.Proto)}
	for name, p := range protocols {
		if p == fe.Proto {
			k.Protocol = name
		}
	}
	return k
}

// Update implements datapath.Table.
func (t *servicesTable) Update(_ context.Context, k datapath.ServiceKey, s datapath.Service) error {
	fe, err := frontend(k)
	if err != nil {
		return fmt.Errorf("service update: %w", err)
	}
	bes := make([]bpf.Backend, len(s.Backends))
	for i, be := range s.Backends {
		if be.Addr.Unmap().Is4() != fe.Addr.Is4() {
			return fmt.Errorf("service update %v: backend %v: a frontend's backends are of its family: %w", fe, be.Addr, ErrNotSupported)
		}
		bes[i] = bpf.Backend{Addr: be.Addr.Unmap(), Port: be.Port}
	}
	if err := t.s.Update(fe, bes); err != nil {
		return fmt.Errorf("service update: %w", err)
	}
	return nil
}

// Delete implements datapath.Table. Frontends the kernel cannot hold are
// absent.
func (t *servicesTable) Delete(_ context.Context, k datapath.ServiceKey) error {
	fe, err := frontend(k)
	if err != nil {
		return nil // never stored, so absent
	}
	if err := t.s.Delete(fe); err != nil {
		return fmt.Errorf("service delete: %w", err)
	}
	return nil
}

// List implements datapath.Table: the frontends and their backends as the
// kernel holds them (no names, no backend clusters; nil Backends for none).
func (t *servicesTable) List(context.Context) (map[datapath.ServiceKey]datapath.Service, error) {
	held, err := t.s.List()
	if err != nil {
		return nil, fmt.Errorf("service list: %w", err)
	}
	out := make(map[datapath.ServiceKey]datapath.Service, len(held))
	for fe, bes := range held {
		var s datapath.Service
		for _, be := range bes {
			s.Backends = append(s.Backends, datapath.Backend{Addr: be.Addr, Port: be.Port})
		}
		out[serviceKey(fe)] = s
	}
	return out, nil
}
