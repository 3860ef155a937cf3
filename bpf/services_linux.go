package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
)

// Frontend is a service address as clients connect to it (a ClusterIP).
type Frontend struct {
	Addr  netip.Addr // IPv4 or IPv6 (an IPv4-mapped address is IPv4)
	Port  uint16
	Proto uint8 // ProtoTCP or ProtoUDP
}

// Backend is where the connections of a frontend go, of the frontend's
// family.
type Backend struct {
	Addr netip.Addr
	Port uint16
}

// lb4Key mirrors struct lb4_key.
type lb4Key struct {
	Addr  [4]byte
	Port  [2]byte // big endian
	Proto uint8
	Pad   uint8
	Slot  uint16
	Pad2  uint16
}

// lb4Value mirrors struct lb4_value.
type lb4Value struct {
	Addr  [4]byte
	Port  [2]byte // big endian
	Count uint16
}

// lb6Key mirrors struct lb6_key.
type lb6Key struct {
	Addr  [16]byte
	Port  [2]byte // big endian
	Proto uint8
	Pad   uint8
	Slot  uint16
	Pad2  uint16
}

// lb6Value mirrors struct lb6_value.
type lb6Value struct {
	Addr  [16]byte
	Port  [2]byte // big endian
	Count uint16
}

// Services maps frontends to backends, IPv4 ones in lb4_services and IPv6
// ones in lb6_services. Slot 0 of a frontend holds the number of backends,
// slots 1..n the backends; the connect programs pick one at random,
// sendmsg by a hash of the socket cookie.
type Services struct {
	m4, m6 *ebpf.Map
	mu     sync.Mutex // serializes changes of one frontend's slots
}

// check normalizes fe (IPv4-mapped to IPv4) and rejects what the datapath
// cannot hold.
func (fe Frontend) check() (Frontend, error) {
	fe.Addr = fe.Addr.Unmap()
	if !fe.Addr.IsValid() || fe.Addr.Zone() != "" {
		return fe, fmt.Errorf("frontend %v: %w", fe.Addr, ErrInvalidAddress)
	}
	if fe.Proto != ProtoTCP && fe.Proto != ProtoUDP {
		return fe, fmt.Errorf("frontend protocol %d: only TCP and UDP: %w", fe.Proto, ErrInvalidAddress)
	}
	return fe, nil
}

// key returns the map of fe's family and the key of its slot.
func (s *Services) key(fe Frontend, slot uint16) (*ebpf.Map, any) {
	if fe.Addr.Is4() {
		k := &lb4Key{Addr: fe.Addr.As4(), Proto: fe.Proto, Slot: slot}
		binary.BigEndian.PutUint16(k.Port[:], fe.Port)
		return s.m4, k
	}
	k := &lb6Key{Addr: fe.Addr.As16(), Proto: fe.Proto, Slot: slot}
	binary.BigEndian.PutUint16(k.Port[:], fe.Port)
	return s.m6, k
}

// value returns the map value of backend be (count for slot 0), which must
// be of fe's family.
func value(fe Frontend, be Backend, count uint16) (any, error) {
	a := be.Addr.Unmap()
	switch {
	case count == 0 && fe.Addr.Is4() && a.Is4():
		v := &lb4Value{Addr: a.As4()}
		binary.BigEndian.PutUint16(v.Port[:], be.Port)
		return v, nil
	case count == 0 && fe.Addr.Is6() && a.Is6() && a.Zone() == "":
		v := &lb6Value{Addr: a.As16()}
		binary.BigEndian.PutUint16(v.Port[:], be.Port)
		return v, nil
	case count == 0:
		return nil, fmt.Errorf("backend %v: not of the frontend's family: %w", be.Addr, ErrInvalidAddress)
	case fe.Addr.Is4():
		return &lb4Value{Count: count}, nil
	default:
		return &lb6Value{Count: count}, nil
	}
}

func (fe Frontend) String() string {
	return fmt.Sprintf("%s/%d", netip.AddrPortFrom(fe.Addr, fe.Port), fe.Proto)
}

// count returns the number of backends the kernel holds for fe.
func (s *Services) count(fe Frontend) (uint16, error) {
	m, k := s.key(fe, 0)
	var v4 lb4Value
	var v6 lb6Value
	var v any = &v6
	if fe.Addr.Is4() {
		v = &v4
	}
	if err := m.Lookup(k, v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, nil
		}
		return 0, err
	}
	return v4.Count + v6.Count, nil
}

// Update sets the backends of fe. Slots are written before the count grows
// and deleted after it shrinks, so a connect never finds an empty slot.
func (s *Services) Update(fe Frontend, backends []Backend) error {
	fe, err := fe.check()
	if err != nil {
		return err
	}
	if len(backends) > math.MaxUint16-1 {
		return fmt.Errorf("service %v: %d backends is too many", fe, len(backends))
	}
	values := make([]any, len(backends))
	for i, be := range backends {
		if values[i], err = value(fe, be, 0); err != nil {
			return fmt.Errorf("service %v: %w", fe, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.count(fe)
	if err != nil {
		return fmt.Errorf("service %v: %w", fe, err)
	}
	for i, v := range values {
		m, k := s.key(fe, uint16(i+1))
		if err := m.Update(k, v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("service %v: write backend %d: %w", fe, i+1, err)
		}
	}
	m, k := s.key(fe, 0)
	n := uint16(len(backends))
	var cv any = &lb6Value{Count: n}
	if fe.Addr.Is4() {
		cv = &lb4Value{Count: n}
	}
	if err := m.Update(k, cv, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("service %v: write backend count: %w", fe, err)
	}
	return s.deleteSlots(fe, n+1, old)
}

func (s *Services) deleteSlots(fe Frontend, from, to uint16) error {
	for slot := from; slot <= to && slot != 0; slot++ {
		m, k := s.key(fe, slot)
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("service %v: delete backend %d: %w", fe, slot, err)
		}
	}
	return nil
}

// Delete removes fe; an absent frontend is not an error.
func (s *Services) Delete(fe Frontend) error {
	fe, err := fe.check()
	if err != nil {
		return nil // never stored
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.count(fe)
	if err != nil {
		return fmt.Errorf("service %v: %w", fe, err)
	}
	m, k := s.key(fe, 0)
	if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("service %v: delete: %w", fe, err)
	}
	return s.deleteSlots(fe, 1, old)
}

// slotted is one slot of a frontend as a map holds it.
type slotted struct {
	fe    Frontend
	slot  uint16
	be    Backend
	count uint16 // slot 0
}

// List returns every frontend with its backends in slot order.
func (s *Services) List() (map[Frontend][]Backend, error) {
	var all []slotted
	var (
		k4 lb4Key
		v4 lb4Value
		k6 lb6Key
		v6 lb6Value
	)
	it := s.m4.Iterate()
	for it.Next(&k4, &v4) {
		fe := Frontend{Addr: netip.AddrFrom4(k4.Addr), Port: binary.BigEndian.Uint16(k4.Port[:]), Proto: k4.Proto}
		all = append(all, slotted{fe, k4.Slot, Backend{Addr: netip.AddrFrom4(v4.Addr), Port: binary.BigEndian.Uint16(v4.Port[:])}, v4.Count})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("services list: %w", err)
	}
	it = s.m6.Iterate()
	for it.Next(&k6, &v6) {
		fe := Frontend{Addr: netip.AddrFrom16(k6.Addr), Port: binary.BigEndian.Uint16(k6.Port[:]), Proto: k6.Proto}
		all = append(all, slotted{fe, k6.Slot, Backend{Addr: netip.AddrFrom16(v6.Addr), Port: binary.BigEndian.Uint16(v6.Port[:])}, v6.Count})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("services list: %w", err)
	}
	counts := map[Frontend]uint16{}
	for _, sl := range all {
		if sl.slot == 0 {
			counts[sl.fe] = sl.count
		}
	}
	out := make(map[Frontend][]Backend, len(counts))
	for fe, n := range counts {
		out[fe] = make([]Backend, n)
	}
	for _, sl := range all {
		if n, ok := counts[sl.fe]; ok && sl.slot != 0 && sl.slot <= n {
			out[sl.fe][sl.slot-1] = sl.be
		}
	}
	return out, nil
}
