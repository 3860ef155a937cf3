package schema

import (
	"encoding/base64"
	"net"
)

// decodeIPEntryFast decodes the common shape of an ip entry without
// reflection: an object of the IPEntry fields, spelled exactly as Cilium
// writes them, whose strings have no escapes, control or non-ASCII bytes,
// whose numbers are plain non-negative integers, and without NamedPorts.
// It reports false, leaving e to be discarded, for anything else, and for
// anything it is not sure encoding/json would decode the same way: the
// caller then decodes with encoding/json, which gives the same value or
// the error. Decoding an ip entry is most of the CPU an agent spends
// ingesting a large peer.
func decodeIPEntryFast(data []byte, e *IPEntry) bool {
	d := fastDecoder{data: skipSpace(data)}
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return len(skipSpace(d.data)) == 0
	}
	for {
		name, ok := d.str()
		if !ok || !d.consume(':') {
			return false
		}
		if !d.field(name, e) {
			return false
		}
		if d.consume(',') {
			continue
		}
		return d.consume('}') && len(skipSpace(d.data)) == 0
	}
}

type fastDecoder struct{ data []byte }

// consume skips spaces and then c, reporting whether c was there.
func (d *fastDecoder) consume(c byte) bool {
	d.data = skipSpace(d.data)
	if len(d.data) == 0 || d.data[0] != c {
		return false
	}
	d.data = d.data[1:]
	return true
}

// str reads a string without escapes and of printable ASCII only; it
// returns a sub-slice of the input.
func (d *fastDecoder) str() ([]byte, bool) {
	if !d.consume('"') {
		return nil, false
	}
	for i, c := range d.data {
		switch {
		case c == '"':
			s := d.data[:i]
			d.data = d.data[i+1:]
			return s, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

// null reads a JSON null.
func (d *fastDecoder) null() bool {
	d.data = skipSpace(d.data)
	if len(d.data) < 4 || string(d.data[:4]) != "null" {
		return false
	}
	d.data = d.data[4:]
	return true
}

// uint reads a non-negative integer of at most max, without leading zeros
// (which JSON forbids), fraction or exponent.
func (d *fastDecoder) uint(maxValue uint64) (uint64, bool) {
	d.data = skipSpace(d.data)
	var n uint64
	i := 0
	for ; i < len(d.data) && d.data[i] >= '0' && d.data[i] <= '9'; i++ {
		if i > 9 { // more digits than any uint32
			return 0, false
		}
		n = n*10 + uint64(d.data[i]-'0')
	}
	if i == 0 || (i > 1 && d.data[0] == '0') || n > maxValue {
		return 0, false
	}
	if i < len(d.data) {
		switch d.data[i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	d.data = d.data[i:]
	return n, true
}

// ip reads an IP string, or null.
func (d *fastDecoder) ip() (net.IP, bool) {
	if d.null() {
		return nil, true
	}
	s, ok := d.str()
	if !ok {
		return nil, false
	}
	if len(s) == 0 {
		return nil, true // as net.IP.UnmarshalText
	}
	ip := net.ParseIP(string(s))
	return ip, ip != nil
}

// field reads the value of the field name into e.
func (d *fastDecoder) field(name []byte, e *IPEntry) bool {
	var ok bool
	switch string(name) {
	case "IP":
		e.IP, ok = d.ip()
	case "HostIP":
		e.HostIP, ok = d.ip()
	case "Mask":
		if d.null() {
			e.Mask = nil
			return true
		}
		var s []byte
		if s, ok = d.str(); !ok || len(s) == 0 {
			return false
		}
		m := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
		n, err := base64.StdEncoding.Decode(m, s)
		e.Mask, ok = m[:n], err == nil
	case "ID":
		var n uint64
		n, ok = d.uint(1<<32 - 1)
		e.ID = uint32(n)
	case "Key":
		var n uint64
		n, ok = d.uint(1<<8 - 1)
		e.Key = uint8(n)
	case "Metadata":
		ok = d.string(&e.Metadata)
	case "K8sNamespace":
		ok = d.string(&e.K8sNamespace)
	case "K8sPodName":
		ok = d.string(&e.K8sPodName)
	case "K8sServiceAccount":
		ok = d.string(&e.K8sServiceAccount)
	}
	return ok
}

// string reads a string into *dst.
func (d *fastDecoder) string(dst *string) bool {
	s, ok := d.str()
	if ok {
		*dst = string(s)
	}
	return ok
}
