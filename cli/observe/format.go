package observe

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

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
	// Print writes f; Flush makes what was printed visible.
	Print(f *flowapi.Flow) error
	Flush() error
}

// NewPrinter returns the printer of format to w; times are printed in loc
// (JSON keeps the agents' RFC 3339 times).
func NewPrinter(format string, w io.Writer, loc *time.Location) (Printer, error) {
	switch format {
	case OutputCompact:
		return &compact{w: w, loc: loc}, nil
	case OutputJSON:
		return &jsonLines{enc: json.NewEncoder(w)}, nil
	case OutputTable:
		return &table{w: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0), loc: loc}, nil
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
	w   io.Writer
	loc *time.Location
}

func (c *compact) Print(f *flowapi.Flow) error {
	_, err := io.WriteString(c.w, Compact(f, c.loc)+"\n")
	return err
}

func (c *compact) Flush() error { return nil }

// Compact returns the compact line of f (without a newline), its time in
// loc.
func Compact(f *flowapi.Flow, loc *time.Location) string {
	var b strings.Builder
	b.WriteString(f.Time.In(loc).Format(timeFormat))
	b.WriteByte(' ')
	src, dst := EndpointString(&f.Src, f.Protocol), EndpointString(&f.Dst, f.Protocol)
	if f.IsReply {
		b.WriteString(dst + " <- " + src)
	} else {
		b.WriteString(src + " -> " + dst)
	}
	if f.Service != nil {
		b.WriteString(" (" + ServiceString(f.Service) + ")")
	}
	b.WriteString(" " + f.Protocol.String())
	if flags := f.TCPFlags.Names(); len(flags) > 0 {
		b.WriteString(" " + strings.Join(flags, ","))
	}
	b.WriteString(" " + strings.ToUpper(f.Verdict) + " (" + f.Reason + ")")
	return b.String()
}

// EndpointString names an end of a flow: cluster/namespace/pod:port for a
// pod, otherwise its address and what it is, e.g. "1.1.1.1:53 (world)".
func EndpointString(e *flowapi.Endpoint, proto flowapi.Protocol) string {
	port := ""
	if e.Port != 0 || (proto != flowapi.ProtoICMP && proto != flowapi.ProtoICMPv6) {
		port = ":" + strconv.Itoa(int(e.Port))
	}
	if e.Pod != "" {
		name := e.Namespace + "/" + e.Pod
		if e.Cluster != "" {
			name = e.Cluster + "/" + name
		}
		return name + port
	}
	addr := e.IP.String()
	if port != "" {
		addr = netip.AddrPortFrom(e.IP, e.Port).String()
	}
	var what string
	switch {
	case e.Node != "": // "remote-node cluster2/n2", "host cluster1/n1"
		what = cmp.Or(e.Reserved, "node") + " " + joinNonEmpty("/", e.Cluster, e.Node)
	case e.CIDR != "":
		what = "cidr " + e.CIDR
	case e.Reserved != "":
		what = e.Reserved
	default:
		what = "identity " + strconv.FormatUint(uint64(e.Identity), 10)
		if e.Cluster != "" {
			what += " of " + e.Cluster
		}
	}
	return addr + " (" + what + ")"
}

// ServiceString names the Service translation of a flow: "service
// default/rebel-base 10.96.0.10:80", or "service 10.96.0.10:80" when the
// agent did not know the frontend's Service.
func ServiceString(s *flowapi.ServiceTranslation) string {
	return joinNonEmpty(" ", "service", s.Ref(), s.Frontend.String())
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// jsonLines prints one flowapi.Flow object per line.
type jsonLines struct{ enc *json.Encoder }

func (j *jsonLines) Print(f *flowapi.Flow) error { return j.enc.Encode(f) }
func (j *jsonLines) Flush() error                { return nil }

// table prints aligned columns; a flush aligns what was printed since the
// last one.
type table struct {
	w      *tabwriter.Writer
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

func (t *table) Flush() error { return t.w.Flush() }
