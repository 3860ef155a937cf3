package flowapi

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// checkDecodeLine decodes b with a Decoder (twice: the second time from
// what it shares) and with encoding/json into a zero Line: the same
// values, an error from both or from neither.
func checkDecodeLine(t *testing.T, d *Decoder, b []byte) {
	t.Helper()
	var want Line
	wantErr := json.Unmarshal(b, &want)
	for range 2 {
		got := Line{Flow: &Flow{Node: "left over", Src: Endpoint{Labels: []string{"x"}}}}
		err := d.DecodeLine(b, &got)
		if (err != nil) != (wantErr != nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("%s: error %v, encoding/json %v", b, err, wantErr)
		}
		if wantErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %+v %+v\nwant %+v %+v", b, got.Flow, got.Status, want.Flow, want.Status)
		}
	}
}

// randomFlow is a flow of every field, its strings from words.
func randomFlow(r *rand.Rand, words []string) Flow {
	w := func() string { return words[r.IntN(len(words))] }
	addr := func() netip.Addr {
		if r.IntN(3) == 0 {
			return netip.AddrFrom16([16]byte{0xfd, byte(r.IntN(256)), 15: byte(r.IntN(256))})
		}
		if r.IntN(10) == 0 {
			return netip.Addr{}
		}
		return netip.AddrFrom4([4]byte{10, byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	ep := func() Endpoint {
		e := Endpoint{IP: addr(), Port: uint16(r.Uint32()), Identity: r.Uint32(), Cluster: w(), Namespace: w(), Pod: w(), Node: w(), Reserved: w(), CIDR: w()}
		for range r.IntN(4) {
			e.Labels = append(e.Labels, w())
		}
		return e
	}
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("", 3600), time.FixedZone("", -5*3600-1800)}
	f := Flow{Time: time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(zones[r.IntN(len(zones))]), Node: w(), Direction: w(), Verdict: w(), Reason: w(),
		Protocol: Protocol(r.IntN(256)), TCPFlags: TCPFlags(r.IntN(256)), IsReply: r.IntN(2) == 0, EndpointID: uint16(r.Uint32()),
		Bytes: r.Uint32(), Src: ep(), Dst: ep()}
	if r.IntN(2) == 0 {
		f.Service = &ServiceTranslation{Namespace: w(), Name: w(), Frontend: netip.AddrPortFrom(addr(), uint16(r.Uint32())),
			Backend: netip.AddrPortFrom(addr(), uint16(r.Uint32())), BackendCluster: w()}
	}
	return f
}

// Every flow line the agent writes decodes as encoding/json decodes it,
// odd strings and all (those with escapes through encoding/json itself).
func TestDecodeLineFlows(t *testing.T) {
	words := []string{"", "n1", "cluster2", "default", "x-wing", "k8s:app=x-wing", "policy-denied", "é 日本", "quote\"", "<tag> & ",
		"\u2028", "tab\t", "\xff", "k8s:io.kubernetes.pod.namespace=default", "}", "]", "a,b"}
	r := rand.New(rand.NewPCG(1, 2))
	var d Decoder
	for range 5000 {
		f := randomFlow(r, words)
		b := append([]byte(`{"flow":`), f.AppendJSON(nil)...)
		b = append(b, '}')
		checkDecodeLine(t, &d, b)
	}
	// The common line is decoded without encoding/json, without allocating.
	f := xwingToRebel
	f.Time, f.Node, f.Reason, f.TCPFlags = time.Date(2025, 6, 1, 12, 0, 0, 5, time.UTC), "n1", "policy-denied", SYN
	f.Service = &ServiceTranslation{Namespace: "default", Name: "rebel-base", Frontend: netip.MustParseAddrPort("10.96.0.10:80"),
		Backend: netip.MustParseAddrPort("10.2.0.7:80"), BackendCluster: "cluster2"}
	b := append(append([]byte(`{"flow":`), f.AppendJSON(nil)...), '}')
	l := Line{Flow: new(Flow)}
	if allocs := testing.AllocsPerRun(100, func() {
		if err := d.DecodeLine(b, &l); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("DecodeLine of a flow seen before: %.1f allocations, want 0", allocs)
	}
}

// Other lines, and lines an agent does not write, decode as encoding/json
// decodes them, errors included.
func TestDecodeLineOther(t *testing.T) {
	var d Decoder
	for _, s := range []string{
		`{"status":{"node":"n1","time":"2025-06-01T12:00:00Z","capacity":8,"held":2,"seen":9,"lost":{"datapath":3}}}`,
		`{"flow":null}`, `{}`, `null`, ``, `{"flow":{}}`, `{"flow":{"time":"2025-06-01T12:00:00Z"}}`, `[1]`, `{"flow":`,
		`{"flow":{"time":"2025-06-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"tcp","isReply":false,"endpointID":0,"bytes":0,"src":{"ip":"","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0}}}`,
		`{"flow":{"time":"2025-06-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","isReply":false,"endpointID":65536,"bytes":0,"src":{"ip":"","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0}}}`,
		`{"flow":{"time":"2025-06-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","isReply":false,"endpointID":01,"bytes":0,"src":{"ip":"","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0}}}`,
		`{"flow":{"time":"2025-06-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","isReply":false,"endpointID":1.5,"bytes":0,"src":{"ip":"","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0}}}`,
		`{"flow":{"time":"2025-06-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","tcpFlags":[],"isReply":false,"endpointID":1,"bytes":0,"src":{"ip":"","port":0,"identity":0,"labels":[]},"dst":{"ip":"","port":0,"identity":0}}}`,
		`{"flow":{"time":"2025-06-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","tcpFlags":["BOGUS"],"isReply":false,"endpointID":1,"bytes":0,"src":{"ip":"","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0}}}`,
		`{"flow":{"time":"2025-06-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","isReply":false,"endpointID":1,"bytes":0,"src":{"ip":"300.1.1.1","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0}}}`,
		`{"flow":{"time":"2025-06-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","isReply":false,"endpointID":1,"bytes":0,"src":{"ip":"","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0},"service":{"namespace":"","frontend":"1.2.3.4:5","backend":""}}}`,
		`{"flow":{"time":"2025-06-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","isReply":false,"endpointID":1,"bytes":0,"src":{"ip":"","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0}} }`,
		`{"flow":{"time":"2025-06-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","isReply":false,"endpointID":1,"bytes":0,"src":{"ip":"","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0}}}x`,
		`{"flow":{"time":"2025-13-01T12:00:00Z","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","isReply":false,"endpointID":1,"bytes":0,"src":{"ip":"","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0}}}`,
		`{"flow":{"time":"2025-06-01T12:00:00+25:00","node":"n","direction":"","verdict":"","reason":"","protocol":"TCP","isReply":false,"endpointID":1,"bytes":0,"src":{"ip":"","port":0,"identity":0},"dst":{"ip":"","port":0,"identity":0}}}`,
	} {
		checkDecodeLine(t, &d, []byte(s))
	}
}

// Any line decodes as encoding/json decodes it.
func FuzzDecodeLine(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		fl := randomFlow(r, []string{"", "n1", "x-wing", "é", "\"", "]"})
		f.Add(append(append([]byte(`{"flow":`), fl.AppendJSON(nil)...), '}'))
	}
	f.Add([]byte(`{"status":{"node":"n1","lost":{"datapath":3}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Decoder
		checkDecodeLine(t, &d, b)
	})
}

func BenchmarkDecodeLine(b *testing.B) {
	f := xwingToRebel
	f.Time, f.Node, f.Reason, f.TCPFlags = time.Now(), "n1", "policy-denied", SYN
	line := append(append([]byte(`{"flow":`), f.AppendJSON(nil)...), '}')
	b.Run("Decoder", func(b *testing.B) {
		var d Decoder
		l := Line{Flow: new(Flow)}
		b.ReportAllocs()
		for b.Loop() {
			if err := d.DecodeLine(line, &l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var l Line
			if err := json.Unmarshal(line, &l); err != nil {
				b.Fatal(err)
			}
		}
	})
}
