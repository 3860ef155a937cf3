package flowapi

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"unicode/utf8"
)

// internLimit bounds the strings, label lists and Services a Decoder
// keeps to share them between flows: past it, it starts afresh (an agent's
// answer is untrusted; its memory stays bounded).
const internLimit = 1 << 14

// Decoder decodes the lines of GET /v1/flows without reflection: a flow
// line as the agent writes it (Flow.AppendJSON inside {"flow":...}) is
// read directly, and its strings, label lists and Service are shared with
// the flows decoded before (flows repeat them). Any other line (a status,
// another spelling, an escape in a string) is handed to encoding/json, so
// that DecodeLine always decodes exactly as json.Unmarshal into a zero
// Line. A Decoder is not safe for concurrent use.
type Decoder struct {
	strs     map[string]string
	labels   map[string][]string
	services map[string]*ServiceTranslation
	addrs    map[string]netip.Addr
}

// DecodeLine decodes b, one line of the answer without its newline, into
// l as json.Unmarshal(b, &Line{}) would (the same values, the same error
// or none). l.Flow, when not nil, is the storage a flow is decoded into:
// it is overwritten whole.
func (d *Decoder) DecodeLine(b []byte, l *Line) error {
	f := l.Flow
	*l = Line{}
	if f == nil {
		f = new(Flow)
	}
	if d.strs == nil || len(d.strs)+len(d.labels)+len(d.services)+len(d.addrs) > internLimit {
		d.strs, d.labels, d.services, d.addrs = map[string]string{}, map[string][]string{}, map[string]*ServiceTranslation{}, map[string]netip.Addr{}
	}
	p := parser{d: d, b: b}
	*f = Flow{}
	if p.lit(`{"flow":`) && p.flow(f) && p.lit("}") && p.i == len(b) {
		l.Flow = f
		return nil
	}
	var fresh Line
	err := json.Unmarshal(b, &fresh)
	if fresh.Flow != nil {
		*f = *fresh.Flow
		fresh.Flow = f
	}
	*l = fresh
	return err
}

// parser reads b from i on; each method reports whether what it expected
// was there, spelled as Flow.AppendJSON writes it.
type parser struct {
	d *Decoder
	b []byte
	i int
}

func (p *parser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// raw returns the bytes of a string literal without its quotes, with
// neither escape nor control character, valid UTF-8 (what encoding/json
// reads as these very bytes).
func (p *parser) raw() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start := p.i + 1
	ascii := true
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			p.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// str reads a string literal, shared with the equal ones read before.
func (p *parser) str() (string, bool) {
	s, ok := p.raw()
	if !ok {
		return "", false
	}
	if v, ok := p.d.strs[string(s)]; ok {
		return v, true
	}
	v := string(s)
	p.d.strs[v] = v
	return v, true
}

// optStr reads `key` and a string if the input goes on with key.
func (p *parser) optStr(key string, dst *string) bool {
	if !p.lit(key) {
		return true
	}
	s, ok := p.str()
	*dst = s
	return ok
}

// uint reads a JSON number that is an integer of at most max.
func (p *parser) uint(max uint64) (uint64, bool) {
	start, v := p.i, uint64(0)
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		v = v*10 + uint64(p.b[p.i]-'0')
		p.i++
		if p.i-start > 10 {
			return 0, false
		}
	}
	n := p.i - start
	if n == 0 || n > 1 && p.b[start] == '0' || v > max {
		return 0, false
	}
	// A fraction or an exponent is encoding/json's to refuse.
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, false
	}
	return v, true
}

func (p *parser) flow(f *Flow) bool {
	if !p.lit(`{"time":`) {
		return false
	}
	ts, ok := p.raw()
	if !ok || f.Time.UnmarshalText(ts) != nil {
		return false
	}
	var proto []byte
	if !p.lit(`,"node":`) || !p.strTo(&f.Node) || !p.lit(`,"direction":`) || !p.strTo(&f.Direction) ||
		!p.lit(`,"verdict":`) || !p.strTo(&f.Verdict) || !p.lit(`,"reason":`) || !p.strTo(&f.Reason) || !p.lit(`,"protocol":`) {
		return false
	}
	if proto, ok = p.raw(); !ok || !parseProtocol(proto, &f.Protocol) {
		return false
	}
	if p.lit(`,"tcpFlags":[`) && !p.tcpFlags(&f.TCPFlags) {
		return false
	}
	if !p.lit(`,"isReply":`) {
		return false
	}
	switch {
	case p.lit("true"):
		f.IsReply = true
	case p.lit("false"):
	default:
		return false
	}
	id, ok := p.key(`,"endpointID":`, 1<<16-1)
	f.EndpointID = uint16(id)
	if !ok {
		return false
	}
	n, ok := p.key(`,"bytes":`, 1<<32-1)
	f.Bytes = uint32(n)
	if !ok || !p.lit(`,"src":`) || !p.endpoint(&f.Src) || !p.lit(`,"dst":`) || !p.endpoint(&f.Dst) {
		return false
	}
	if p.lit(`,"service":`) && !p.service(&f.Service) {
		return false
	}
	return p.lit("}")
}

func (p *parser) strTo(dst *string) bool {
	s, ok := p.str()
	*dst = s
	return ok
}

// key reads key and an integer of at most max.
func (p *parser) key(key string, max uint64) (uint64, bool) {
	if !p.lit(key) {
		return 0, false
	}
	return p.uint(max)
}

// parseProtocol reads the names Protocol.String writes and decimal
// numbers, as Protocol.UnmarshalText does; anything else is left to it.
func parseProtocol(b []byte, dst *Protocol) bool {
	switch string(b) {
	case "TCP":
		*dst = ProtoTCP
	case "UDP":
		*dst = ProtoUDP
	case "ICMP":
		*dst = ProtoICMP
	case "ICMPv6":
		*dst = ProtoICMPv6
	case "SCTP":
		*dst = ProtoSCTP
	default:
		if len(b) == 0 || len(b) > 3 {
			return false
		}
		v := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return false
			}
			v = v*10 + int(c-'0')
		}
		if v > 255 {
			return false
		}
		*dst = Protocol(v)
	}
	return true
}

// tcpFlags reads the names of TCP flags up to the closing bracket (the
// opening one read).
func (p *parser) tcpFlags(dst *TCPFlags) bool {
	for first := true; ; first = false {
		if p.lit("]") {
			return !first // [] is encoding/json's (AppendJSON omits no flag)
		}
		if !first && !p.lit(",") {
			return false
		}
		name, ok := p.raw()
		if !ok {
			return false
		}
		found := false
		for _, n := range tcpFlagNames {
			if string(name) == n.name {
				*dst |= n.f
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
}

func (p *parser) endpoint(e *Endpoint) bool {
	if !p.lit(`{"ip":`) {
		return false
	}
	if !p.addr(&e.IP) {
		return false
	}
	port, ok := p.key(`,"port":`, 1<<16-1)
	e.Port = uint16(port)
	if !ok {
		return false
	}
	id, ok := p.key(`,"identity":`, 1<<32-1)
	e.Identity = uint32(id)
	if !ok || !p.optStr(`,"cluster":`, &e.Cluster) || !p.optStr(`,"namespace":`, &e.Namespace) || !p.optStr(`,"pod":`, &e.Pod) ||
		!p.optStr(`,"node":`, &e.Node) || !p.optStr(`,"reserved":`, &e.Reserved) || !p.optStr(`,"cidr":`, &e.CIDR) {
		return false
	}
	if p.lit(`,"labels":`) && !p.labels(&e.Labels) {
		return false
	}
	return p.lit("}")
}

// labels reads a non-empty array of strings, shared with an equal array
// read before.
func (p *parser) labels(dst *[]string) bool {
	start := p.i
	if !p.lit("[") {
		return false
	}
	end := bytes.IndexByte(p.b[p.i:], ']')
	if end < 0 {
		return false
	}
	if ls, ok := p.d.labels[string(p.b[start:p.i+end+1])]; ok {
		// The same bytes: they read the same, as they did before.
		p.i += end + 1
		*dst = ls
		return true
	}
	var ls []string
	for {
		s, ok := p.str()
		if !ok {
			return false
		}
		ls = append(ls, s)
		if p.lit("]") {
			break
		}
		if !p.lit(",") {
			return false
		}
	}
	p.d.labels[string(p.b[start:p.i])] = ls
	*dst = ls
	return true
}

// service reads a Service translation, shared with an equal one read
// before (Flow.Service may be shared: readers do not modify it).
func (p *parser) service(dst **ServiceTranslation) bool {
	start := p.i
	end := bytes.IndexByte(p.b[p.i:], '}')
	if end < 0 {
		return false
	}
	if s, ok := p.d.services[string(p.b[start:start+end+1])]; ok {
		p.i += end + 1
		*dst = s
		return true
	}
	s := new(ServiceTranslation)
	if !p.lit("{") || !p.optStr(`"namespace":`, &s.Namespace) || s.Namespace != "" && !p.lit(",") ||
		!p.optStr(`"name":`, &s.Name) || s.Name != "" && !p.lit(",") || !p.lit(`"frontend":`) || !p.addrPort(&s.Frontend) ||
		!p.lit(`,"backend":`) || !p.addrPort(&s.Backend) || !p.optStr(`,"backendCluster":`, &s.BackendCluster) || !p.lit("}") {
		return false
	}
	p.d.services[string(p.b[start:p.i])] = s
	*dst = s
	return true
}

// addr reads an IP address, parsed once for the same bytes.
func (p *parser) addr(dst *netip.Addr) bool {
	b, ok := p.raw()
	if !ok {
		return false
	}
	if a, ok := p.d.addrs[string(b)]; ok {
		*dst = a
		return true
	}
	if dst.UnmarshalText(b) != nil {
		return false
	}
	p.d.addrs[string(b)] = *dst
	return true
}

func (p *parser) addrPort(dst *netip.AddrPort) bool {
	b, ok := p.raw()
	return ok && dst.UnmarshalText(b) == nil
}
