package observe

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

var (
	rebelA       = flowapi.Endpoint{IP: netip.MustParseAddr("10.2.0.8"), Port: 80, Identity: 131092, Cluster: "cluster2", Namespace: "default", Pod: "rebel-base-a"}
	viaRebelBase = &flowapi.ServiceTranslation{Namespace: "default", Name: "rebel-base", Frontend: netip.MustParseAddrPort("10.96.0.10:80"),
		Backend: netip.MustParseAddrPort("10.2.0.8:80"), BackendCluster: "cluster2"}
	xwing = flowapi.Endpoint{IP: netip.MustParseAddr("10.1.0.5"), Port: 43210, Identity: 65546, Cluster: "cluster1", Namespace: "default", Pod: "x-wing"}
	rebel = flowapi.Endpoint{IP: netip.MustParseAddr("10.2.0.7"), Port: 80, Identity: 131092, Cluster: "cluster2", Namespace: "default", Pod: "rebel-base"}
)

func TestCompact(t *testing.T) {
	denied := flowapi.Flow{Time: t0, Verdict: "dropped", Reason: "policy-denied", Protocol: flowapi.ProtoTCP, TCPFlags: flowapi.SYN, Src: xwing, Dst: rebel}
	synAck := flowapi.Flow{Time: t0.Add(1500 * time.Millisecond), Verdict: "forwarded", Reason: "ct-reply", Protocol: flowapi.ProtoTCP,
		TCPFlags: flowapi.SYN | flowapi.ACK, IsReply: true, Src: rebel, Dst: xwing}
	for _, tc := range []struct {
		name string
		f    flowapi.Flow
		want string
	}{
		{"the issue's example", denied, "12:00:00.000 cluster1/default/x-wing:43210 -> cluster2/default/rebel-base:80 TCP SYN DROPPED (policy-denied)"},
		{"a reply, from the client's side", synAck, "12:00:01.500 cluster1/default/x-wing:43210 <- cluster2/default/rebel-base:80 TCP SYN,ACK FORWARDED (ct-reply)"},
		{"world", flowapi.Flow{Time: t0, Verdict: "forwarded", Reason: "policy-allow", Protocol: flowapi.ProtoUDP, Src: xwing,
			Dst: flowapi.Endpoint{IP: netip.MustParseAddr("1.1.1.1"), Port: 53, Identity: 2, Reserved: "world"}},
			"12:00:00.000 cluster1/default/x-wing:43210 -> 1.1.1.1:53 (world) UDP FORWARDED (policy-allow)"},
		{"a node", flowapi.Flow{Time: t0, Verdict: "forwarded", Reason: "policy-allow", Protocol: flowapi.ProtoTCP, Src: xwing,
			Dst: flowapi.Endpoint{IP: netip.MustParseAddr("192.168.2.1"), Port: 10250, Identity: 6, Cluster: "cluster2", Node: "n2", Reserved: "remote-node"}},
			"12:00:00.000 cluster1/default/x-wing:43210 -> 192.168.2.1:10250 (remote-node cluster2/n2) TCP FORWARDED (policy-allow)"},
		{"a CIDR, ICMP without ports", flowapi.Flow{Time: t0, Verdict: "dropped", Reason: "policy-deny-rule", Protocol: flowapi.ProtoICMP,
			Src: flowapi.Endpoint{IP: xwing.IP, Identity: xwing.Identity, Cluster: "cluster1", Namespace: "default", Pod: "x-wing"},
			Dst: flowapi.Endpoint{IP: netip.MustParseAddr("203.0.113.9"), Identity: 65636, CIDR: "203.0.113.0/24"}},
			"12:00:00.000 cluster1/default/x-wing -> 203.0.113.9 (cidr 203.0.113.0/24) ICMP DROPPED (policy-deny-rule)"},
		{"IPv6, an identity of a cluster", flowapi.Flow{Time: t0, Verdict: "dropped", Reason: "policy-denied", Protocol: flowapi.ProtoTCP,
			Src: flowapi.Endpoint{IP: netip.MustParseAddr("fd00:2::7"), Port: 8080, Identity: 131099, Cluster: "cluster2"}, Dst: xwing},
			"12:00:00.000 [fd00:2::7]:8080 (identity 131099 of cluster2) -> cluster1/default/x-wing:43210 TCP DROPPED (policy-denied)"},
		{"through a Service", flowapi.Flow{Time: t0, Verdict: "forwarded", Reason: "policy-allow", Protocol: flowapi.ProtoTCP, TCPFlags: flowapi.SYN,
			Src: xwing, Dst: rebelA, Service: viaRebelBase},
			"12:00:00.000 cluster1/default/x-wing:43210 -> cluster2/default/rebel-base-a:80 (service default/rebel-base 10.96.0.10:80) TCP SYN FORWARDED (policy-allow)"},
		{"through a frontend of no known Service", flowapi.Flow{Time: t0, Verdict: "dropped", Reason: "policy-denied", Protocol: flowapi.ProtoUDP,
			Src: xwing, Dst: rebelA, Service: &flowapi.ServiceTranslation{Frontend: netip.MustParseAddrPort("[fd00:96::a]:53"), Backend: viaRebelBase.Backend}},
			"12:00:00.000 cluster1/default/x-wing:43210 -> cluster2/default/rebel-base-a:80 (service [fd00:96::a]:53) UDP DROPPED (policy-denied)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Compact(&tc.f, time.UTC); got != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestPrinters(t *testing.T) {
	fs := []flowapi.Flow{
		{Time: t0, Node: "n1", Verdict: "dropped", Reason: "policy-denied", Protocol: flowapi.ProtoTCP, TCPFlags: flowapi.SYN, Src: xwing, Dst: rebel},
		{Time: t0.Add(time.Second), Node: "node-two", Verdict: "forwarded", Reason: "ct-reply", Protocol: flowapi.ProtoTCP,
			TCPFlags: flowapi.SYN | flowapi.ACK, IsReply: true, Src: rebel, Dst: xwing},
		{Time: t0.Add(2 * time.Second), Node: "n1", Verdict: "forwarded", Reason: "policy-allow", Protocol: flowapi.ProtoTCP,
			TCPFlags: flowapi.SYN, Src: xwing, Dst: rebelA, Service: viaRebelBase},
	}
	print := func(format string) string {
		var b bytes.Buffer
		p, err := NewPrinter(format, &b, time.UTC)
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
		return b.String()
	}
	wantTable := `TIME          NODE      SOURCE                          DESTINATION                       PROTOCOL  FLAGS          VERDICT    REASON         SERVICE
12:00:00.000  n1        cluster1/default/x-wing:43210   cluster2/default/rebel-base:80    TCP       SYN            DROPPED    policy-denied  -
12:00:01.000  node-two  cluster2/default/rebel-base:80  cluster1/default/x-wing:43210     TCP       SYN,ACK,reply  FORWARDED  ct-reply       -
12:00:02.000  n1        cluster1/default/x-wing:43210   cluster2/default/rebel-base-a:80  TCP       SYN            FORWARDED  policy-allow   default/rebel-base 10.96.0.10:80
`
	if d := cmp.Diff(wantTable, print(OutputTable)); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
	// JSON: one flow object per line, as the agents' API writes it.
	lines := strings.Split(strings.TrimSpace(print(OutputJSON)), "\n")
	if len(lines) != 3 {
		t.Fatalf("json: %d lines, want 3", len(lines))
	}
	var svc flowapi.Flow
	if err := json.Unmarshal([]byte(lines[2]), &svc); err != nil || svc.Service.Ref() != "default/rebel-base" ||
		svc.Service.Frontend != viaRebelBase.Frontend || svc.Service.Backend != viaRebelBase.Backend || svc.Service.BackendCluster != "cluster2" {
		t.Errorf("json line %s: %+v (%v)", lines[2], svc.Service, err)
	}
	var back flowapi.Flow
	if err := json.Unmarshal([]byte(lines[1]), &back); err != nil || !back.IsReply || back.Src.Pod != "rebel-base" || back.Node != "node-two" {
		t.Errorf("json line %s: %+v (%v)", lines[1], back, err)
	}
	if !strings.HasPrefix(lines[0], `{"time":"2025-06-01T12:00:00Z","node":"n1","direction":"","verdict":"dropped"`) {
		t.Errorf("json line %s", lines[0])
	}
	if got := print(OutputCompact); strings.Count(got, "\n") != 3 {
		t.Errorf("compact: %q", got)
	}
	if _, err := NewPrinter("yaml", nil, time.UTC); err == nil || !strings.Contains(err.Error(), `--output "yaml": use compact, json or table`) {
		t.Errorf("unknown format: %v", err)
	}
}
