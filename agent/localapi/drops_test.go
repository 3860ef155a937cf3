package localapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/flows"
)

// GET /v1/drops answers the dropped flows in its own documented form.
func TestDropsAPI(t *testing.T) {
	a := New(Config{Flows: recorderWith(flowsFixture(), flows.Config{Node: "n1"})})
	code, body := get(t, a, "/v1/drops")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/drops: %d %s", code, body)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"overwritten": 0.0, "drops": []any{
		map[string]any{"time": "2025-06-01T12:00:02Z", "direction": "egress", "reason": "policy-denied",
			"src": "10.1.0.5:43210", "dst": "10.2.0.7:80", "protocol": 6.0, "srcIdentity": 65546.0, "dstIdentity": 131092.0,
			"srcCluster": "cluster1", "dstCluster": "cluster2", "endpointID": 3.0},
		map[string]any{"time": "2025-06-01T12:00:03Z", "direction": "egress", "reason": "policy-deny-rule",
			"src": "10.1.0.9:5000", "dst": "1.1.1.1:53", "protocol": 17.0, "srcIdentity": 65547.0, "dstIdentity": 2.0,
			"srcCluster": "cluster1", "endpointID": 4.0},
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
		{"?since=2025-06-01T12:00:02Z", []string{"policy-deny-rule"}},
		{"?since=2025-06-01T12:00:01.999999999Z", []string{"policy-denied", "policy-deny-rule"}},
		{"?since=2025-06-01T14:00:02%2B02:00&limit=1", []string{"policy-deny-rule"}}, // 12:00:02Z, another zone
		{"?since=2025-06-01T12:00:03Z", []string{}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := get(t, a, "/v1/drops"+tc.query)
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
	a := New(Config{Flows: flows.NewRecorder(flows.Config{})})
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
		{New(Config{}), "", http.StatusNotFound, "flows are recorded only with --datapath=bpf"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := get(t, tc.api, "/v1/drops"+tc.query)
			if code != tc.code || !strings.Contains(body, tc.msg) {
				t.Errorf("%d %s, want %d with %q", code, body, tc.code, tc.msg)
			}
		})
	}
}
