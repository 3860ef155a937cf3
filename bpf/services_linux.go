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
	Addr  netip.Addr // IPv4
	Port  uint16
	Proto uint8 // ProtoTCP or ProtoUDP
}

// Backend is where the connections of a frontend go.
type Backend struct {
	Addr netip.Addr // IPv4
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

// Services maps frontends to backends. Slot 0 of a frontend holds the
// number of backends, slots 1..n the backends; the connect4 program picks
// one at random, sendmsg4 by a hash of the socket cookie.
type Services struct {
	m  *ebpf.Map
	mu sync.Mutex // serializes changes of one frontend's slots
}

func (fe Frontend) key(slot uint16) (lb4Key, error) {
	if !fe.Addr.Unmap().Is4() {
		return lb4Key{}, fmt.Errorf("frontend %v: %w", fe.Addr, ErrInvalidAddress)
	}
	if fe.Proto != ProtoTCP && fe.Proto != ProtoUDP {
		return lb4Key{}, fmt.Errorf("frontend protocol %d: only TCP and UDP: %w", fe.Proto, ErrInvalidAddress)
	}
	k := lb4Key{Addr: fe.Addr.Unmap().As4(), Proto: fe.Proto, Slot: slot}
	binary.BigEndian.PutUint16(k.Port[:], fe.Port)
	return k, nil
}

func (fe Frontend) String() string {
	return fmt.Sprintf("%s/%d", netip.AddrPortFrom(fe.Addr, fe.Port), fe.Proto)
}

// count returns the number of backends the kernel holds for fe.
func (s *Services) count(fe Frontend) (uint16, error) {
	k, err := fe.key(0)
	if err != nil {
		return 0, err
	}
	var v lb4Value
	if err := s.m.Lookup(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, nil
		}
		return 0, err
	}
	return v.Count, nil
}

// Update sets the backends of fe. Slots are written before the count grows
// and deleted after it shrinks, so a connect never finds an empty slot.
func (s *Services) Update(fe Frontend, backends []Backend) error {
	if len(backends) > math.MaxUint16-1 {
		return fmt.Errorf("service %v: %d backends is too many", fe, len(backends))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.count(fe)
	if err != nil {
		return fmt.Errorf("service %v: %w", fe, err)
	}
	for i, be := range backends {
		if !be.Addr.Unmap().Is4() {
			return fmt.Errorf("service %v: backend %v: %w", fe, be.Addr, ErrInvalidAddress)
		}
		k, _ := fe.key(uint16(i + 1))
		v := lb4Value{Addr: be.Addr.Unmap().As4()}
		binary.BigEndian.PutUint16(v.Port[:], be.Port)
		if err := s.m.Update(&k, &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("service %v: write backend %d: %w", fe, i+1, err)
		}
	}
	k, _ := fe.key(0)
	if err := s.m.Update(&k, &lb4Value{Count: uint16(len(backends))}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("service %v: write backend count: %w", fe, err)
	}
	return s.deleteSlots(fe, uint16(len(backends))+1, old)
}

func (s *Services) deleteSlots(fe Frontend, from, to uint16) error {
	for slot := from; slot <= to && slot != 0; slot++ {
		k, _ := fe.key(slot)
		if err := s.m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("service %v: delete backend %d: %w", fe, slot, err)
		}
	}
	return nil
}

// Delete removes fe; an absent frontend is not an error.
func (s *Services) Delete(fe Frontend) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.count(fe)
	if err != nil {
		return fmt.Errorf("service %v: %w", fe, err)
	}
	k, _ := fe.key(0)
	if err := s.m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("service %v: delete: %w", fe, err)
	}
	return s.deleteSlots(fe, 1, old)
}

// List returns every frontend with its backends in slot order.
func (s *Services) List() (map[Frontend][]Backend, error) {
	type slotted struct {
		slot uint16
		be   Backend
	}
	counts := map[Frontend]uint16{}
	slots := map[Frontend][]slotted{}
	var (
		k lb4Key
		v lb4Value
	)
	it := s.m.Iterate()
	for it.Next(&k, &v) {
		fe := Frontend{Addr: netip.AddrFrom4(k.Addr), Port: binary.BigEndian.Uint16(k.Port[:]), Proto: k.Proto}
		if k.Slot == 0 {
			counts[fe] = v.Count
			continue
		}
		slots[fe] = append(slots[fe], slotted{k.Slot, Backend{Addr: netip.AddrFrom4(v.Addr), Port: binary.BigEndian.Uint16(v.Port[:])}})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("services list: %w", err)
	}
	out := make(map[Frontend][]Backend, len(counts))
	for fe, n := range counts {
		bes := make([]Backend, n)
		for _, s := range slots[fe] {
			if s.slot <= n {
				bes[s.slot-1] = s.be
			}
		}
		out[fe] = bes
	}
	return out, nil
}
