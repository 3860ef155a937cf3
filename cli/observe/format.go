package observe

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

// timeFormat is the time of a compact line or a table row.
const timeFormat = "15:04:05.000"

// Output formats.
const (
	OutputCompact = "compact"
	OutputJSON    = "json"
	OutputTable   = "table"
)

// Printer writes flows in one format.
type Printer interface {
	// Print writes f; Flush ends a group of flows (a table aligns the
	// columns of a group) and makes what was printed visible.
	Print(f *flowapi.Flow) error
	Flush() error
}

// grouper is a Printer that buffers its output: endGroup ends a group of
// flows as Flush does, without writing what was printed yet. Run ends
// groups where it flushed before, and flushes once no more flows are at
// hand.
type grouper interface {
	Printer
	endGroup() error
}

// outputBuffer is the size of a printer's output buffer.
const outputBuffer = 64 << 10

// NewPrinter returns the printer of format to w; times are printed in loc
// (JSON keeps the agents' RFC 3339 times). What it prints reaches w on
// Flush.
func NewPrinter(format string, w io.Writer, loc *time.Location) (Printer, error) {
	bw := bufio.NewWriterSize(w, outputBuffer)
	switch format {
	case OutputCompact:
		return &compact{w: bw, loc: loc}, nil
	case OutputJSON:
		return &jsonLines{w: bw}, nil
	case OutputTable:
		return &table{w: tabwriter.NewWriter(bw, 0, 8, 2, ' ', 0), out: bw, loc: loc}, nil
	}
	return nil, fmt.Errorf("--output %q: use compact, json or table", format)
}

// compact prints one line per flow, readable at a glance:
//
//	12:00:01.000 cluster1/default/x-wing:43210 -> cluster2/default/rebel-base:80 TCP SYN DROPPED (policy-denied)
//
// A reply is printed from the client's side, with "<-". A flow socket load
// balancing translated names the Service after the backend chosen:
//
//	12:00:01.000 cluster1/default/x-wing:43210 -> cluster2/default/rebel-base-a:80 (service default/rebel-base 10.96.0.10:80) TCP SYN FORWARDED (policy-allow)
type compact struct {
	w   *bufio.Writer
	loc *time.Location
	buf []byte
}

func (c *compact) Print(f *flowapi.Flow) error {
	c.buf = append(appendCompact(c.buf[:0], f, c.loc), '\n')
	_, err := c.w.Write(c.buf)
	return err
}

func (c *compact) Flush() error    { return c.w.Flush() }
func (c *compact) endGroup() error { return nil }

// Compact returns the compact line of f (without a newline), its time in
// loc.
func Compact(f *flowapi.Flow, loc *time.Location) string {
	return string(appendCompact(nil, f, loc))
}

// appendCompact appends the compact line of f to b.
func appendCompact(b []byte, f *flowapi.Flow, loc *time.Location) []byte {
	b = f.Time.In(loc).AppendFormat(b, timeFormat)
	b = append(b, ' ')
	first, second, arrow := &f.Src, &f.Dst, " -> "
	if f.IsReply {
		first, second, arrow = &f.Dst, &f.Src, " <- "
	}
	b = appendEndpoint(b, first, f.Protocol)
	b = append(b, arrow...)
	b = appendEndpoint(b, second, f.Protocol)
	if f.Service != nil {
		b = append(b, " ("...)
		b = appendService(b, f.Service)
		b = append(b, ')')
	}
	b = append(b, ' ')
	b = append(b, f.Protocol.String()...)
	if f.TCPFlags != 0 {
		b = append(b, ' ')
		b = append(b, strings.Join(f.TCPFlags.Names(), ",")...)
	}
	b = append(b, ' ')
	b = appendUpper(b, f.Verdict)
	b = append(b, " ("...)
	b = append(b, f.Reason...)
	return append(b, ')')
}

// appendUpper appends strings.ToUpper(s), without allocating for ASCII.
func appendUpper(b []byte, s string) []byte {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return append(b, strings.ToUpper(s)...)
		}
	}
	for i := range len(s) {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// EndpointString names an end of a flow: cluster/namespace/pod:port for a
// pod, otherwise its address and what it is, e.g. "1.1.1.1:53 (world)".
func EndpointString(e *flowapi.Endpoint, proto flowapi.Protocol) string {
	return string(appendEndpoint(nil, e, proto))
}

func appendEndpoint(b []byte, e *flowapi.Endpoint, proto flowapi.Protocol) []byte {
	withPort := e.Port != 0 || (proto != flowapi.ProtoICMP && proto != flowapi.ProtoICMPv6)
	if e.Pod != "" {
		if e.Cluster != "" {
			b = append(append(b, e.Cluster...), '/')
		}
		b = append(append(append(b, e.Namespace...), '/'), e.Pod...)
		if withPort {
			b = strconv.AppendUint(append(b, ':'), uint64(e.Port), 10)
		}
		return b
	}
	switch {
	case !e.IP.IsValid() && withPort:
		b = append(b, netip.AddrPortFrom(e.IP, e.Port).String()...) // "invalid AddrPort"
	case !e.IP.IsValid():
		b = append(b, e.IP.String()...) // "invalid IP"
	case withPort:
		b = netip.AddrPortFrom(e.IP, e.Port).AppendTo(b)
	default:
		b = e.IP.AppendTo(b)
	}
	b = append(b, " ("...)
	switch {
	case e.Node != "": // "remote-node cluster2/n2", "host cluster1/n1"
		b = append(append(b, cmp.Or(e.Reserved, "node")...), ' ')
		if e.Cluster != "" {
			b = append(append(b, e.Cluster...), '/')
		}
		b = append(b, e.Node...)
	case e.CIDR != "":
		b = append(append(b, "cidr "...), e.CIDR...)
	case e.Reserved != "":
		b = append(b, e.Reserved...)
	default:
		b = strconv.AppendUint(append(b, "identity "...), uint64(e.Identity), 10)
		if e.Cluster != "" {
			b = append(append(b, " of "...), e.Cluster...)
		}
	}
	return append(b, ')')
}

// ServiceString names the Service translation of a flow: "service
// default/rebel-base 10.96.0.10:80", or "service 10.96.0.10:80" when the
// agent did not know the frontend's Service.
func ServiceString(s *flowapi.ServiceTranslation) string {
	return string(appendService(nil, s))
}

func appendService(b []byte, s *flowapi.ServiceTranslation) []byte {
	b = append(b, "service"...)
	if s.Name != "" { // s.Ref()
		b = append(append(append(append(b, ' '), s.Namespace...), '/'), s.Name...)
	}
	b = append(b, ' ')
	if !s.Frontend.Addr().IsValid() {
		return append(b, s.Frontend.String()...) // "invalid AddrPort"
	}
	return s.Frontend.AppendTo(b)
}

// jsonLines prints one flowapi.Flow object per line, as a json.Encoder
// does (flowapi.Flow.AppendJSON is its MarshalJSON, already compact and
// HTML-escaped).
type jsonLines struct {
	w   *bufio.Writer
	buf []byte
}

func (j *jsonLines) Print(f *flowapi.Flow) error {
	j.buf = append(f.AppendJSON(j.buf[:0]), '\n')
	_, err := j.w.Write(j.buf)
	return err
}

func (j *jsonLines) Flush() error    { return j.w.Flush() }
func (j *jsonLines) endGroup() error { return nil }

// table prints aligned columns; a flush aligns what was printed since the
// last one.
type table struct {
	w      *tabwriter.Writer
	out    *bufio.Writer // under w
	loc    *time.Location
	header bool
}

func (t *table) Print(f *flowapi.Flow) error {
	if !t.header {
		t.header = true
		if _, err := io.WriteString(t.w, "TIME\tNODE\tSOURCE\tDESTINATION\tPROTOCOL\tFLAGS\tVERDICT\tREASON\tSERVICE\n"); err != nil {
			return err
		}
	}
	flags := strings.Join(f.TCPFlags.Names(), ",")
	if f.IsReply {
		flags = strings.TrimPrefix(flags+",reply", ",")
	}
	service := "-"
	if f.Service != nil { // "default/rebel-base 10.96.0.10:80"
		service = strings.TrimPrefix(ServiceString(f.Service), "service ")
	}
	_, err := fmt.Fprintf(t.w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Time.In(t.loc).Format(timeFormat), f.Node,
		EndpointString(&f.Src, f.Protocol), EndpointString(&f.Dst, f.Protocol), f.Protocol, cmp.Or(flags, "-"),
		strings.ToUpper(f.Verdict), f.Reason, service)
	return err
}

func (t *table) endGroup() error { return t.w.Flush() }

func (t *table) Flush() error {
	if err := t.w.Flush(); err != nil {
		return err
	}
	return t.out.Flush()
}
