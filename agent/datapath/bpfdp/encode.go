package bpfdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/identity"
)

// Records keep the parts of a value the kernel maps do not hold (service
// names, backend clusters, policy rules as given). They are encoded by hand,
// versioned, and decoded strictly: a record that does not decode is ignored
// (see doc.go: the kernel is the truth, records are a faithful hint).

const recordVersion = 1

// nilCount marks a nil slice, which reflect.DeepEqual tells from an empty one.
const nilCount = math.MaxUint32

var errBadRecord = errors.New("malformed record")

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendCount(b []byte, isNil bool, n int) []byte {
	if isNil {
		return binary.BigEndian.AppendUint32(b, nilCount)
	}
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

func flag(b bool, bit uint8) uint8 {
	if b {
		return bit
	}
	return 0
}

// encodeService encodes s. Strings longer than 64 KiB cannot be encoded.
func encodeService(s datapath.Service) ([]byte, error) {
	if len(s.Namespace) > math.MaxUint16 || len(s.Name) > math.MaxUint16 {
		return nil, fmt.Errorf("service name %s/%s is too long", s.Namespace, s.Name)
	}
	b := []byte{recordVersion}
	b = appendString(b, s.Namespace)
	b = appendString(b, s.Name)
	b = appendCount(b, s.Backends == nil, len(s.Backends))
	for _, be := range s.Backends {
		a, err := be.Addr.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encode backend address %v: %w", be.Addr, err)
		}
		if len(be.Cluster) > math.MaxUint16 {
			return nil, fmt.Errorf("backend cluster name %q is too long", be.Cluster)
		}
		b = appendString(b, string(a))
		b = binary.BigEndian.AppendUint16(b, be.Port)
		b = appendString(b, be.Cluster)
	}
	return b, nil
}

// encodePolicy encodes p.
func encodePolicy(p datapath.EndpointPolicy) []byte {
	b := make([]byte, 0, 10+10*len(p.Rules))
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(p.Identity))
	b = append(b, flag(p.EnforceIngress, 1)|flag(p.EnforceEgress, 2))
	b = appendCount(b, p.Rules == nil, len(p.Rules))
	for _, r := range p.Rules {
		b = binary.BigEndian.AppendUint32(b, uint32(r.Identity))
		b = append(b, flag(r.Ingress, 1)|flag(r.Deny, 2), r.Proto)
		b = binary.BigEndian.AppendUint16(b, r.Port)
		b = binary.BigEndian.AppendUint16(b, r.EndPort)
	}
	return b
}

// reader decodes a record; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.err = errBadRecord
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() uint8   { return r.take(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) str() string { return string(r.take(int(r.u16()))) }

// flags reads a byte of flags; bits outside mask fail.
func (r *reader) flags(mask uint8) uint8 {
	f := r.u8()
	if f&^mask != 0 && r.err == nil {
		r.err = fmt.Errorf("%w: flags %#x", errBadRecord, f)
	}
	return f
}

// count reads a slice length; nil is reported as -1. Counts larger than
// what the remaining bytes can hold (at least min bytes an element) fail.
func (r *reader) count(minSize int) int {
	n := r.u32()
	if n == nilCount {
		return -1
	}
	if r.err == nil && uint64(n)*uint64(minSize) > uint64(len(r.b)) {
		r.err = errBadRecord
	}
	if r.err != nil {
		return 0
	}
	return int(n)
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = errBadRecord
	}
	return r.err
}

func (r *reader) version() {
	if v := r.u8(); r.err == nil && v != recordVersion {
		r.err = fmt.Errorf("%w: version %d", errBadRecord, v)
	}
}

func decodeService(b []byte) (datapath.Service, error) {
	r := &reader{b: b}
	r.version()
	s := datapath.Service{Namespace: r.str(), Name: r.str()}
	if n := r.count(6); n >= 0 {
		s.Backends = make([]datapath.Backend, 0, n)
		for range n {
			var be datapath.Backend
			if err := be.Addr.UnmarshalBinary([]byte(r.str())); err != nil && r.err == nil {
				r.err = fmt.Errorf("%w: backend address: %w", errBadRecord, err)
			}
			be.Port = r.u16()
			be.Cluster = r.str()
			s.Backends = append(s.Backends, be)
		}
	}
	if err := r.done(); err != nil {
		return datapath.Service{}, err
	}
	return s, nil
}

func decodePolicy(b []byte) (datapath.EndpointPolicy, error) {
	r := &reader{b: b}
	r.version()
	p := datapath.EndpointPolicy{Identity: identity.NumericIdentity(r.u32())}
	f := r.flags(3)
	p.EnforceIngress, p.EnforceEgress = f&1 != 0, f&2 != 0
	if n := r.count(10); n >= 0 {
		p.Rules = make([]datapath.PolicyRule, 0, n)
		for range n {
			pr := datapath.PolicyRule{Identity: identity.NumericIdentity(r.u32())}
			f := r.flags(3)
			pr.Ingress, pr.Deny = f&1 != 0, f&2 != 0
			pr.Proto, pr.Port, pr.EndPort = r.u8(), r.u16(), r.u16()
			p.Rules = append(p.Rules, pr)
		}
	}
	if err := r.done(); err != nil {
		return datapath.EndpointPolicy{}, err
	}
	return p, nil
}
