package flowapi

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

// reflected is Flow without its MarshalJSON: what encoding/json writes
// from the struct tags, the reference of AppendJSON.
type reflected Flow

func checkAppendJSON(t *testing.T, f Flow) {
	t.Helper()
	want, err := json.Marshal(reflected(f))
	if err != nil {
		t.Fatal(err)
	}
	got := f.AppendJSON(nil)
	if !bytes.Equal(got, want) {
		t.Errorf("AppendJSON\n got %s\nwant %s", got, want)
	}
	if marshaled, err := json.Marshal(f); err != nil || !bytes.Equal(marshaled, want) {
		t.Errorf("json.Marshal(Flow) = %s, %v", marshaled, err)
	}
}

func TestAppendJSON(t *testing.T) {
	full := xwingToRebel
	full.Time = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	full.Node, full.Reason, full.TCPFlags, full.IsReply, full.EndpointID, full.Bytes = "n1", "policy-denied", SYN|ACK|FIN|CWR, true, 65535, 1<<31
	odd := Flow{Node: "quote\" back\\ <tag> & \n\t\r\b\f \x00\x1f é 日本 \u2028\u2029 \xff\xfe end", Protocol: 200,
		Src: Endpoint{IP: netip.MustParseAddr("fd00::1"), Reserved: "world", CIDR: "10.0.0.0/8", Node: "n", Labels: []string{"a=\"b\"", "<c>"}},
		Dst: Endpoint{Labels: []string{}}}
	service := full
	service.Service = &ServiceTranslation{Namespace: "rebels", Name: "rebel-base", Frontend: netip.MustParseAddrPort("10.96.0.10:80"),
		Backend: netip.MustParseAddrPort("10.2.0.7:80"), BackendCluster: "cluster2"}
	unnamed := full
	unnamed.Service = &ServiceTranslation{Frontend: netip.MustParseAddrPort("[fd00:96::a]:443"), Backend: netip.MustParseAddrPort("[fd00::7]:8443")}
	for name, f := range map[string]Flow{"zero": {}, "full": full, "odd strings": odd, "service": service, "unnamed service": unnamed} {
		t.Run(name, func(t *testing.T) { checkAppendJSON(t, f) })
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("n1", "k8s:app=x", uint8(0x12), uint8(6))
	f.Add("\xff<\u2028", "\x00\"", uint8(0xff), uint8(99))
	f.Fuzz(func(t *testing.T, node, label string, flags, proto uint8) {
		fl := xwingToRebel
		fl.Node, fl.Reason, fl.TCPFlags, fl.Protocol = node, label, TCPFlags(flags), Protocol(proto)
		fl.Src.Labels = []string{label, node}
		checkAppendJSON(t, fl)
		fl.Service = &ServiceTranslation{Namespace: label, Name: node, Frontend: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, flags, proto}), uint16(flags)<<8|uint16(proto)),
			Backend: netip.AddrPortFrom(fl.Dst.IP, fl.Dst.Port), BackendCluster: node}
		checkAppendJSON(t, fl)
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	f := xwingToRebel
	f.Time, f.Node, f.Reason, f.TCPFlags = time.Now(), "n1", "policy-denied", SYN
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = f.AppendJSON(buf[:0])
	}
}
