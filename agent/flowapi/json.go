package flowapi

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// MarshalJSON implements json.Marshaler with AppendJSON: one encoder for
// the API's flows, without reflection (an agent streams many of them).
func (f Flow) MarshalJSON() ([]byte, error) { return f.AppendJSON(nil), nil }

// AppendJSON appends the JSON object of f, as encoding/json writes its
// struct (field names and omitempty as tagged), to b.
func (f *Flow) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = f.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","node":`...)
	b = appendString(b, f.Node)
	b = append(b, `,"direction":`...)
	b = appendString(b, f.Direction)
	b = append(b, `,"verdict":`...)
	b = appendString(b, f.Verdict)
	b = append(b, `,"reason":`...)
	b = appendString(b, f.Reason)
	b = append(b, `,"protocol":`...)
	b = appendString(b, f.Protocol.String())
	if f.TCPFlags != 0 {
		b = append(b, `,"tcpFlags":[`...)
		first := true
		for _, n := range tcpFlagNames {
			if f.TCPFlags&n.f != 0 {
				if !first {
					b = append(b, ',')
				}
				first = false
				b = append(b, '"')
				b = append(b, n.name...)
				b = append(b, '"')
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"isReply":`...)
	b = strconv.AppendBool(b, f.IsReply)
	b = append(b, `,"endpointID":`...)
	b = strconv.AppendUint(b, uint64(f.EndpointID), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendUint(b, uint64(f.Bytes), 10)
	b = append(b, `,"src":`...)
	b = f.Src.appendJSON(b)
	b = append(b, `,"dst":`...)
	b = f.Dst.appendJSON(b)
	if f.Service != nil {
		b = append(b, `,"service":`...)
		b = f.Service.appendJSON(b)
	}
	return append(b, '}')
}

func (s *ServiceTranslation) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if s.Namespace != "" {
		b = append(b, `"namespace":`...)
		b = appendString(b, s.Namespace)
		b = append(b, ',')
	}
	if s.Name != "" {
		b = append(b, `"name":`...)
		b = appendString(b, s.Name)
		b = append(b, ',')
	}
	b = append(b, `"frontend":`...)
	b = appendAddrPort(b, s.Frontend)
	b = append(b, `,"backend":`...)
	b = appendAddrPort(b, s.Backend)
	if s.BackendCluster != "" {
		b = append(b, `,"backendCluster":`...)
		b = appendString(b, s.BackendCluster)
	}
	return append(b, '}')
}

// appendAddrPort appends a as encoding/json writes a netip.AddrPort: its
// text form, "" for the zero value.
func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	b = append(b, '"')
	if a.IsValid() {
		b = a.AppendTo(b)
	}
	return append(b, '"')
}

func (e *Endpoint) appendJSON(b []byte) []byte {
	b = append(b, `{"ip":"`...)
	b = e.IP.AppendTo(b)
	b = append(b, `","port":`...)
	b = strconv.AppendUint(b, uint64(e.Port), 10)
	b = append(b, `,"identity":`...)
	b = strconv.AppendUint(b, uint64(e.Identity), 10)
	for _, kv := range [...]struct{ k, v string }{
		{`,"cluster":`, e.Cluster}, {`,"namespace":`, e.Namespace}, {`,"pod":`, e.Pod},
		{`,"node":`, e.Node}, {`,"reserved":`, e.Reserved}, {`,"cidr":`, e.CIDR},
	} {
		if kv.v != "" {
			b = append(b, kv.k...)
			b = appendString(b, kv.v)
		}
	}
	if len(e.Labels) > 0 {
		b = append(b, `,"labels":[`...)
		for i, l := range e.Labels {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, l)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string as encoding/json writes it:
// HTML-safe (<, >, & escaped), invalid UTF-8 replaced, U+2028 and U+2029
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
