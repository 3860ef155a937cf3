package observe

import (
	"bytes"
	"cmp"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

// compactReference is Compact as it was written first, with strings: the
// reference of the appending one.
func compactReference(f *flowapi.Flow, loc *time.Location) string {
	var b strings.Builder
	b.WriteString(f.Time.In(loc).Format(timeFormat))
	b.WriteByte(' ')
	src, dst := endpointReference(&f.Src, f.Protocol), endpointReference(&f.Dst, f.Protocol)
	if f.IsReply {
		b.WriteString(dst + " <- " + src)
	} else {
		b.WriteString(src + " -> " + dst)
	}
	if f.Service != nil {
		b.WriteString(" (" + joinNonEmpty(" ", "service", f.Service.Ref(), f.Service.Frontend.String()) + ")")
	}
	b.WriteString(" " + f.Protocol.String())
	if flags := f.TCPFlags.Names(); len(flags) > 0 {
		b.WriteString(" " + strings.Join(flags, ","))
	}
	b.WriteString(" " + strings.ToUpper(f.Verdict) + " (" + f.Reason + ")")
	return b.String()
}

func endpointReference(e *flowapi.Endpoint, proto flowapi.Protocol) string {
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
	case e.Node != "":
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

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// randomFlows returns n flows of every shape compact prints: pods or
// addresses (none, IPv4, IPv6) of every kind, ICMP without ports, replies,
// Services known or not, odd verdicts.
func randomFlows(n int) []flowapi.Flow {
	r := rand.New(rand.NewPCG(5, 6))
	words := []string{"", "", "cluster2", "default", "x-wing", "dropped", "forwarded", "policy-denied", "ß é", "n1", "10.0.0.0/8", "world"}
	w := func() string { return words[r.IntN(len(words))] }
	addr := func() netip.Addr {
		switch r.IntN(4) {
		case 0:
			return netip.Addr{}
		case 1:
			return netip.AddrFrom16([16]byte{0xfd, 15: byte(r.IntN(256))})
		}
		return netip.AddrFrom4([4]byte{10, 1, byte(r.IntN(256)), byte(r.IntN(256))})
	}
	ep := func() flowapi.Endpoint {
		return flowapi.Endpoint{IP: addr(), Port: uint16(r.IntN(3) * 8080), Identity: r.Uint32(), Cluster: w(), Namespace: w(), Pod: w(),
			Node: w(), Reserved: w(), CIDR: w()}
	}
	protos := []flowapi.Protocol{flowapi.ProtoTCP, flowapi.ProtoUDP, flowapi.ProtoICMP, flowapi.ProtoICMPv6, flowapi.ProtoSCTP, 99}
	var out []flowapi.Flow
	for range n {
		f := flowapi.Flow{Time: time.Unix(r.Int64N(4e9), r.Int64N(1e9)), Node: w(), Direction: w(), Verdict: w(), Reason: w(),
			Protocol: protos[r.IntN(len(protos))], TCPFlags: flowapi.TCPFlags(r.IntN(4) * r.IntN(256)), IsReply: r.IntN(2) == 0, Src: ep(), Dst: ep()}
		if r.IntN(3) == 0 {
			f.Service = &flowapi.ServiceTranslation{Namespace: w(), Name: w(), Frontend: netip.AddrPortFrom(addr(), uint16(r.IntN(2)*80)), BackendCluster: w()}
		}
		out = append(out, f)
	}
	return out
}

// The compact line and the JSON line are what they were before they were
// appended into a buffer: Compact as first written, a json.Encoder.
func TestPrintersAsBefore(t *testing.T) {
	loc := time.FixedZone("x", 5*3600+1800)
	fs := randomFlows(3000)
	var wantJSON bytes.Buffer
	enc := json.NewEncoder(&wantJSON)
	var wantCompact strings.Builder
	for i := range fs {
		if got, want := Compact(&fs[i], loc), compactReference(&fs[i], loc); got != want {
			t.Fatalf("flow %+v:\n got %s\nwant %s", fs[i], got, want)
		}
		wantCompact.WriteString(compactReference(&fs[i], loc) + "\n")
		if err := enc.Encode(&fs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for format, want := range map[string]string{OutputJSON: wantJSON.String(), OutputCompact: wantCompact.String()} {
		var b bytes.Buffer
		p, err := NewPrinter(format, &b, loc)
		if err != nil {
			t.Fatal(err)
		}
		for i := range fs {
			if err := p.Print(&fs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if b.String() != want {
			t.Errorf("-o %s: the printer's output differs from the reference's", format)
		}
	}
}
