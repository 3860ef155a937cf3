package flowapi

import (
	"encoding/json"
	"errors"
	"net/url"
	"testing"
)

// The query parsers never panic, fail only with a *ParamError, and what
// they accept prints back to the same request.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"", "last=5&since=2025-06-01T12:00:00Z&follow=true", "from-pod=default/x-wing&to-pod=a/b",
		"label=k8s:app=x&label=app&identity=world&identity=7", "protocol=tcp&port=80&verdict=dropped", "namespace=%00", "label=:", "port=-1",
		"service=default/rebel-base&service=a/b", "service=a/b/c", "service=%20/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r, err := ParseRequest(q)
		if err != nil {
			if _, ok := errors.AsType[*ParamError](err); !ok {
				t.Fatalf("%q: error %v is not a *ParamError", raw, err)
			}
			return
		}
		back, err := ParseRequest(r.Values())
		if err != nil {
			t.Fatalf("%q: accepted, but its Values %v do not parse: %v", raw, r.Values(), err)
		}
		if !back.Since.Equal(r.Since) || back.Last != r.Last || back.Follow != r.Follow || len(back.Filter.Label) != len(r.Filter.Label) ||
			len(back.Filter.Service) != len(r.Filter.Service) {
			t.Fatalf("%q: %+v, read back %+v", raw, r, back)
		}
	})
}

// A flow line from an agent decodes or fails, never panics.
func FuzzLine(f *testing.F) {
	f.Add(`{"flow":{"protocol":"TCP","tcpFlags":["SYN","ACK"],"src":{"ip":"10.0.0.1"}}}`)
	f.Add(`{"status":{"node":"n1","lost":{"datapath":3}}}`)
	f.Add(`{"flow":{"protocol":"300"}}`)
	f.Add(`{"flow":{"service":{"namespace":"default","name":"rebel-base","frontend":"10.96.0.10:80","backend":"10.2.0.7:80","backendCluster":"cluster2"}}}`)
	f.Add(`{"flow":{"service":{"frontend":"10.96.0.10:99999"}}}`)
	f.Fuzz(func(t *testing.T, s string) {
		var l Line
		_ = json.Unmarshal([]byte(s), &l)
	})
}
