package localapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/drops"
	"github.com/clustermesh/clustermesh/bpf"
)

// eventSource returns its events, then closes drained and blocks until
// ctx ends: a datapath that dropped these packets.
type eventSource struct {
	events  []bpf.Event
	drained chan struct{}
}

func (s *eventSource) Read(ctx context.Context) (bpf.Event, error) {
	if len(s.events) > 0 {
		ev := s.events[0]
		s.events = s.events[1:]
		return ev, nil
	}
	select {
	case <-s.drained:
	default:
		close(s.drained)
	}
	<-ctx.Done()
	return bpf.Event{}, ctx.Err()
}

// recorderOf returns a recorder that read events (owned by the test).
func recorderOf(t *testing.T, events ...bpf.Event) *drops.Recorder {
	t.Helper()
	rec := drops.NewRecorder(drops.Config{ClusterOf: func(id uint32) string {
		return map[uint32]string{65537: "cluster1", 131073: "cluster2"}[id]
	}})
	src := &eventSource{events: events, drained: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx, src) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-src.drained:
	case err := <-done:
		t.Fatalf("recorder stopped: %v", err)
	}
	return rec
}

// getDrops serves GET /v1/drops<query> through the API's routes.
func getDrops(t *testing.T, a *API, query string) (int, string) {
	t.Helper()
	mux := http.NewServeMux()
	a.Register(mux)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/drops"+query, nil))
	return w.Code, w.Body.String()
}

func TestDropsAPI(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	denied := bpf.Event{
		Time: t0, Verdict: bpf.Dropped, Reason: bpf.ReasonPolicyDenied, Ingress: true, EndpointID: 3,
		SrcIdentity: 131073, DstIdentity: 65537, Proto: bpf.ProtoTCP,
		Src: netip.MustParseAddrPort("10.2.1.5:40000"), Dst: netip.MustParseAddrPort("10.1.0.7:8080"),
	}
	allowed := denied
	allowed.Verdict, allowed.Reason, allowed.Time = bpf.Allowed, bpf.ReasonPolicyAllow, t0.Add(time.Second)
	egress := denied
	egress.Time, egress.Ingress, egress.Reason = t0.Add(2*time.Second), false, bpf.ReasonPolicyDenyRule
	egress.SrcIdentity, egress.DstIdentity, egress.Src, egress.Dst = 65537, 2, egress.Dst, netip.MustParseAddrPort("1.1.1.1:53")
	egress.Proto = bpf.ProtoUDP
	a := New(Config{Drops: recorderOf(t, denied, allowed, egress).List})

	// The JSON shape, as documented in docs/agent-api.md.
	code, body := getDrops(t, a, "")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/drops: %d %s", code, body)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"overwritten": 0.0, "drops": []any{
		map[string]any{"time": "2025-06-01T12:00:00Z", "direction": "ingress", "reason": "policy-denied",
			"src": "10.2.1.5:40000", "dst": "10.1.0.7:8080", "protocol": 6.0, "srcIdentity": 131073.0, "dstIdentity": 65537.0,
			"srcCluster": "cluster2", "dstCluster": "cluster1", "endpointID": 3.0},
		map[string]any{"time": "2025-06-01T12:00:02Z", "direction": "egress", "reason": "policy-deny-rule",
			"src": "10.1.0.7:8080", "dst": "1.1.1.1:53", "protocol": 17.0, "srcIdentity": 65537.0, "dstIdentity": 2.0,
			"srcCluster": "cluster1", "endpointID": 3.0},
	}}
	if d := cmp.Diff(want, raw); d != "" {
		t.Errorf("GET /v1/drops (-want +got):\n%s", d)
	}

	for _, tc := range []struct {
		query   string
		reasons []string
	}{
		{"?limit=1", []string{"policy-deny-rule"}},
		{"?limit=5", []string{"policy-denied", "policy-deny-rule"}},
		{"?since=2025-06-01T12:00:00Z", []string{"policy-deny-rule"}},
		{"?since=2025-06-01T11:59:59.999999999Z", []string{"policy-denied", "policy-deny-rule"}},
		{"?since=2025-06-01T14:00:00%2B02:00&limit=1", []string{"policy-deny-rule"}}, // 12:00Z, another zone
		{"?since=2025-06-01T12:00:02Z", []string{}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := getDrops(t, a, tc.query)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, body)
			}
			var resp DropsResponse
			if err := json.Unmarshal([]byte(body), &resp); err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, r := range resp.Drops {
				got = append(got, r.Reason)
			}
			if d := cmp.Diff(tc.reasons, got); d != "" {
				t.Errorf("reasons (-want +got):\n%s", d)
			}
		})
	}
}

func TestDropsAPIErrors(t *testing.T) {
	a := New(Config{Drops: drops.NewRecorder(drops.Config{}).List})
	for _, tc := range []struct {
		api   *API
		query string
		code  int
		msg   string
	}{
		{a, "?since=yesterday", http.StatusBadRequest, `since=\"yesterday\": want an RFC 3339 time`},
		{a, "?since=2025-06-01", http.StatusBadRequest, "want an RFC 3339 time"},
		{a, "?limit=0", http.StatusBadRequest, `limit=\"0\": want a positive number`},
		{a, "?limit=-3", http.StatusBadRequest, "want a positive number"},
		{a, "?limit=ten", http.StatusBadRequest, "want a positive number"},
		// --datapath=none: no recorder.
		{New(Config{}), "", http.StatusNotFound, "drops are recorded only with --datapath=bpf"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := getDrops(t, tc.api, tc.query)
			if code != tc.code || !strings.Contains(body, tc.msg) {
				t.Errorf("%d %s, want %d with %q", code, body, tc.code, tc.msg)
			}
		})
	}
}
