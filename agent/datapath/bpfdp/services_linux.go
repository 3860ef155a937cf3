package bpfdp

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
)

// servicesTable is the services table: bpf.Services holds frontends and
// backend addresses, a record per frontend the names and backend clusters.
type servicesTable struct {
	s   *bpf.Services
	rec *records
	mu  sync.Mutex // serializes changes, so that kernel and records agree
}

var protocols = map[string]uint8{"TCP": bpf.ProtoTCP, "UDP": bpf.ProtoUDP}

// frontend returns the kernel frontend of k, or an error saying why the
// eBPF datapath cannot hold it (IPv6, SCTP).
func frontend(k datapath.ServiceKey) (bpf.Frontend, error) {
	if !k.Addr.Is4() {
		return bpf.Frontend{}, fmt.Errorf("frontend %v: socket load balancing is IPv4 only: %w", k.Addr, ErrNotSupported)
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

func serviceID(fe bpf.Frontend) recordID {
	var id recordID
	a := fe.Addr.As4()
	copy(id[:4], a[:])
	binary.BigEndian.PutUint16(id[4:6], fe.Port)
	id[6] = fe.Proto
	return id
}

// Update implements datapath.Table.
func (t *servicesTable) Update(_ context.Context, k datapath.ServiceKey, s datapath.Service) error {
	fe, err := frontend(k)
	if err != nil {
		return fmt.Errorf("service update: %w", err)
	}
	rec, err := encodeService(s)
	if err != nil {
		return fmt.Errorf("service update %v: %w", fe, err)
	}
	bes := make([]bpf.Backend, len(s.Backends))
	for i, be := range s.Backends {
		if !be.Addr.Unmap().Is4() {
			return fmt.Errorf("service update %v: backend %v: socket load balancing is IPv4 only: %w", fe, be.Addr, ErrNotSupported)
		}
		bes[i] = bpf.Backend{Addr: be.Addr, Port: be.Port}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.s.Update(fe, bes); err != nil {
		return fmt.Errorf("service update: %w", err)
	}
	if err := t.rec.put(kindService, serviceID(fe), rec); err != nil {
		return fmt.Errorf("service update %v: %w", fe, err)
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
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.rec.delete(kindService, serviceID(fe)); err != nil {
		return fmt.Errorf("service delete %v: %w", fe, err)
	}
	if err := t.s.Delete(fe); err != nil {
		return fmt.Errorf("service delete: %w", err)
	}
	return nil
}

// List implements datapath.Table: the frontends and backends the kernel
// holds, with names and clusters from their records where the record
// agrees with the kernel.
func (t *servicesTable) List(context.Context) (map[datapath.ServiceKey]datapath.Service, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	held, err := t.s.List()
	if err != nil {
		return nil, fmt.Errorf("service list: %w", err)
	}
	recs, err := t.rec.list(kindService)
	if err != nil {
		return nil, fmt.Errorf("service list: %w", err)
	}
	out := make(map[datapath.ServiceKey]datapath.Service, len(held))
	for fe, bes := range held {
		if s, err := decodeService(recs[serviceID(fe)]); err == nil && sameBackends(s.Backends, bes) {
			out[serviceKey(fe)] = s
			continue
		}
		s := datapath.Service{Backends: make([]datapath.Backend, len(bes))}
		for i, be := range bes {
			s.Backends[i] = datapath.Backend{Addr: be.Addr, Port: be.Port}
		}
		out[serviceKey(fe)] = s
	}
	return out, nil
}

// sameBackends reports whether the kernel holds the backends of a record.
func sameBackends(rec []datapath.Backend, held []bpf.Backend) bool {
	if len(rec) != len(held) {
		return false
	}
	for i, be := range rec {
		if be.Addr.Unmap() != held[i].Addr || be.Port != held[i].Port {
			return false
		}
	}
	return true
}
