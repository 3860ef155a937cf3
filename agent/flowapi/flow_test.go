package flowapi

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The JSON form is the documented API (docs/agent-api.md): field names,
// protocol and TCP flags by name, and it reads back.
func TestFlowJSON(t *testing.T) {
	f := xwingToRebel
	f.Time = time.Date(2025, 6, 1, 12, 0, 0, 123, time.UTC)
	f.Node, f.Reason, f.TCPFlags, f.EndpointID, f.Bytes = "n1", "policy-denied", SYN|ACK, 12, 60
	b, err := json.Marshal(Line{Flow: &f})
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"flow": map[string]any{
		"time": "2025-06-01T12:00:00.000000123Z", "node": "n1", "direction": "ingress", "verdict": "dropped",
		"reason": "policy-denied", "protocol": "TCP", "tcpFlags": []any{"SYN", "ACK"}, "isReply": false, "endpointID": 12.0, "bytes": 60.0,
		"src": map[string]any{"ip": "10.1.0.5", "port": 43210.0, "identity": 65546.0, "cluster": "cluster1", "namespace": "default", "pod": "x-wing",
			"labels": []any{"k8s:app=x-wing", "k8s:io.kubernetes.pod.namespace=default"}},
		"dst": map[string]any{"ip": "10.2.0.7", "port": 80.0, "identity": 131092.0, "cluster": "cluster2", "namespace": "rebels", "pod": "rebel-base",
			"labels": []any{"k8s:app=rebel-base", "k8s:io.kubernetes.pod.namespace=rebels"}},
	}}
	if d := cmp.Diff(want, raw); d != "" {
		t.Errorf("JSON (-want +got):\n%s", d)
	}
	var back Line
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&f, back.Flow, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); d != "" {
		t.Errorf("read back (-want +got):\n%s", d)
	}
}

// A flow through a Service adds "service" (and only then): the Service,
// the frontend the client addressed, the backend chosen and its cluster.
func TestFlowJSONService(t *testing.T) {
	f := xwingToRebel
	f.Service = &ServiceTranslation{Namespace: "rebels", Name: "rebel-base", Frontend: netip.MustParseAddrPort("10.96.0.10:80"),
		Backend: netip.MustParseAddrPort("10.2.0.7:80"), BackendCluster: "cluster2"}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"namespace": "rebels", "name": "rebel-base", "frontend": "10.96.0.10:80", "backend": "10.2.0.7:80", "backendCluster": "cluster2"}
	if d := cmp.Diff(want, raw["service"]); d != "" {
		t.Errorf("service (-want +got):\n%s", d)
	}
	var back Flow
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(f, back, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); d != "" {
		t.Errorf("read back (-want +got):\n%s", d)
	}
	if got, want := f.Service.Ref(), "rebels/rebel-base"; got != want {
		t.Errorf("Ref() = %q, want %q", got, want)
	}
	b, err = json.Marshal(xwingToRebel)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`"service"`)) {
		t.Errorf("a flow not through a Service has a service field: %s", b)
	}
}

func TestProtocolAndFlags(t *testing.T) {
	for p, s := range map[Protocol]string{ProtoTCP: "TCP", ProtoUDP: "UDP", ProtoICMP: "ICMP", ProtoICMPv6: "ICMPv6", ProtoSCTP: "SCTP", 47: "47"} {
		if p.String() != s {
			t.Errorf("Protocol(%d) = %q, want %q", uint8(p), p.String(), s)
		}
		if back, err := ParseProtocol(s); err != nil || back != p {
			t.Errorf("ParseProtocol(%q) = %v, %v", s, back, err)
		}
	}
	if got := (SYN | ACK | FIN).String(); got != "SYN|FIN|ACK" {
		t.Errorf("flags %q", got)
	}
	var f TCPFlags
	if err := json.Unmarshal([]byte(`["SYN","BOGUS"]`), &f); err == nil {
		t.Error("unknown TCP flag: want an error")
	}
}
