package flowapi

import (
	"errors"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A cross-cluster flow: x-wing in cluster1 to rebel-base in cluster2.
var xwingToRebel = Flow{
	Verdict: VerdictDropped, Protocol: ProtoTCP, Direction: DirectionIngress,
	Src: Endpoint{IP: netip.MustParseAddr("10.1.0.5"), Port: 43210, Identity: 65546, Cluster: "cluster1", Namespace: "default", Pod: "x-wing",
		Labels: []string{"k8s:app=x-wing", "k8s:io.kubernetes.pod.namespace=default"}},
	Dst: Endpoint{IP: netip.MustParseAddr("10.2.0.7"), Port: 80, Identity: 131092, Cluster: "cluster2", Namespace: "rebels", Pod: "rebel-base",
		Labels: []string{"k8s:app=rebel-base", "k8s:io.kubernetes.pod.namespace=rebels"}},
}

func TestFilterMatch(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  bool
	}{
		{"", true},
		{"from-pod=default/x-wing", true},
		{"from-pod=rebels/rebel-base", false},
		{"to-pod=rebels/rebel-base", true},
		{"to-pod=default/rebel-base", false},
		{"from-pod=default/tie-fighter&from-pod=default/x-wing", true}, // OR within a parameter
		{"from-cluster=cluster1&to-cluster=cluster2", true},            // AND across
		{"from-cluster=cluster2", false},
		{"to-cluster=cluster1", false},
		{"namespace=rebels", true}, // either end
		{"namespace=default", true},
		{"namespace=empire", false},
		{"label=app=rebel-base", true}, // any source
		{"label=k8s:app=x-wing", true},
		{"label=reserved:app=x-wing", false},
		{"label=app", true}, // any value
		{"label=app=tie-fighter", false},
		{"label=k8s:app", true},
		{"identity=131092", true},
		{"identity=65546", true},
		{"identity=world", false},
		{"verdict=dropped", true},
		{"verdict=forwarded", false},
		{"verdict=FORWARDED&verdict=Dropped", true},
		{"protocol=tcp", true},
		{"protocol=6", true},
		{"protocol=UDP", false},
		{"port=80", true},
		{"port=43210", true},
		{"port=81", false},
		{"from-pod=default/x-wing&verdict=forwarded", false},
		{"service=rebels/rebel-base", false}, // not through a Service
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			f, err := ParseFilter(q)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Match(&xwingToRebel); got != tc.want {
				t.Errorf("Match = %v, want %v (filter %+v)", got, tc.want, f)
			}
			// The parameters the filter gives back parse to the same filter.
			back, err := ParseFilter(f.Values())
			if err != nil {
				t.Fatalf("parse %v: %v", f.Values(), err)
			}
			if d := cmp.Diff(f, back); d != "" {
				t.Errorf("ParseFilter(Values()) (-want +got):\n%s", d)
			}
		})
	}
}

// --service matches the Service a flow was translated from, by namespace
// and name, ORed within the parameter and ANDed with the others.
func TestFilterService(t *testing.T) {
	viaService := xwingToRebel
	viaService.Service = &ServiceTranslation{Namespace: "rebels", Name: "rebel-base",
		Frontend: netip.MustParseAddrPort("10.96.0.10:80"), Backend: netip.MustParseAddrPort("10.2.0.7:80"), BackendCluster: "cluster2"}
	unknown := viaService
	unknown.Service = &ServiceTranslation{Frontend: viaService.Service.Frontend, Backend: viaService.Service.Backend}
	for _, tc := range []struct {
		query            string
		service, unnamed bool // the flow through the Service, and through a frontend of no known Service
	}{
		{"service=rebels/rebel-base", true, false},
		{"service=default/rebel-base", false, false},
		{"service=rebels/death-star", false, false},
		{"service=rebels/death-star&service=rebels/rebel-base", true, false},
		{"service=rebels/rebel-base&verdict=forwarded", false, false},
		{"service=rebels/rebel-base&to-cluster=cluster2", true, false},
		{"", true, true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			f, err := ParseFilter(q)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Match(&viaService); got != tc.service {
				t.Errorf("Match(through rebels/rebel-base) = %v, want %v", got, tc.service)
			}
			if got := f.Match(&unknown); got != tc.unnamed {
				t.Errorf("Match(through an unknown frontend) = %v, want %v", got, tc.unnamed)
			}
			back, err := ParseFilter(f.Values())
			if err != nil || !cmp.Equal(f, back) {
				t.Errorf("ParseFilter(Values()) = %+v, %v, want %+v", back, err, f)
			}
		})
	}
}

// Every bad value is an error naming the parameter and what it should be.
func TestFilterErrors(t *testing.T) {
	for _, tc := range []struct{ query, err, flag string }{
		{"from-pod=x-wing", `from-pod="x-wing": want <namespace>/<pod>`, `--from-pod "x-wing": want <namespace>/<pod>`},
		{"to-pod=/x", `to-pod="/x": want <namespace>/<pod>`, ""},
		{"to-pod=a/b/c", `to-pod="a/b/c": want <namespace>/<pod>`, ""},
		{"from-cluster=Cluster_1", `from-cluster="Cluster_1": want a cluster name`, ""},
		{"to-cluster=", `to-cluster="": want a cluster name`, ""},
		{"namespace=a/b", `namespace="a/b": want a namespace name`, ""},
		{"label=:x", `label=":x": want a label`, ""},
		{"identity=-1", `identity="-1": want a numeric identity or a reserved identity's name`, ""},
		{"identity=galaxy", `identity="galaxy": want a numeric identity`, ""},
		{"verdict=denied", `verdict="denied": want forwarded or dropped`, `--verdict "denied": want forwarded or dropped`},
		{"protocol=quic", `protocol="quic": want tcp, udp, icmp, icmpv6, sctp or a protocol number`, ""},
		{"protocol=256", `protocol="256": want tcp`, ""},
		{"port=0", `port="0": want a port number (1-65535)`, ""},
		{"port=65536", `port="65536": want a port number`, ""},
		{"port=http", `port="http": want a port number`, ""},
		{"service=rebel-base", `service="rebel-base": want <namespace>/<service>`, `--service "rebel-base": want <namespace>/<service>`},
		{"service=rebels/", `service="rebels/": want <namespace>/<service>`, ""},
		{"service=a/b/c", `service="a/b/c": want <namespace>/<service>`, ""},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			_, err := ParseFilter(q)
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("err %v, want a *ParamError", err)
			}
			if got := err.Error(); len(got) < len(tc.err) || got[:len(tc.err)] != tc.err {
				t.Errorf("error %q, want it to start with %q", got, tc.err)
			}
			if tc.flag != "" && pe.FlagError() != tc.flag {
				t.Errorf("flag error %q, want %q", pe.FlagError(), tc.flag)
			}
		})
	}
}

func TestRequest(t *testing.T) {
	since := time.Date(2025, 6, 1, 12, 0, 0, 5, time.UTC)
	r := Request{Last: 20, Since: since, Follow: true, Filter: Filter{Verdict: []string{VerdictDropped}, Port: []uint16{80}}}
	got, err := ParseRequest(r.Values())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r, got); d != "" {
		t.Errorf("ParseRequest(Values()) (-want +got):\n%s", d)
	}
	for query, want := range map[string]string{
		"last=0":           `last="0": want a positive number of flows`,
		"last=ten":         `last="ten": want a positive number`,
		"since=yesterday":  `since="yesterday": want an RFC 3339 time`,
		"since=2025-06-01": `since="2025-06-01": want an RFC 3339 time`,
		"follow=maybe":     `follow="maybe": want true or false`,
		"port=x":           `port="x": want a port number`,
	} {
		q, _ := url.ParseQuery(query)
		_, err := ParseRequest(q)
		if err == nil || len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
			t.Errorf("%s: error %v, want %q", query, err, want)
		}
	}
}
