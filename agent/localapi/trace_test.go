package localapi

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/clustermesh/clustermesh/agent/policy"
	"github.com/clustermesh/clustermesh/agent/state"
)

// Bad queries of the policy routes are refused naming the parameter; an
// agent without a policy engine, or one not ready, says so.
func TestTraceRefusals(t *testing.T) {
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	var policyErr error
	a := New(Config{Cluster: "cluster1", Node: "n1", State: st,
		Policy: func(context.Context, func(*policy.Engine)) error { return policyErr }})
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/policy/trace?to=default/b&port=80", http.StatusBadRequest, "parameter from is required"},
		{"/v1/policy/trace?from=a&to=default/b&port=80", http.StatusBadRequest, `parameter from: pod \"a\": write it as`},
		{"/v1/policy/trace?from=default/a&to=default/b&port=0", http.StatusBadRequest, `parameter port \"0\"`},
		{"/v1/policy/trace?from=default/a&to=default/b&port=80&protocol=ICMP", http.StatusBadRequest, `parameter protocol \"ICMP\"`},
		{"/v1/policy/endpoints?pod=c2/default/a", http.StatusBadRequest, `parameter pod \"c2/default/a\"`},
		// Neither pod is known: nothing to ask the engine, both ends not found.
		{"/v1/policy/trace?from=default/a&to=c2/default/b&port=80", http.StatusOK, `"found": false`},
	} {
		code, body := get(t, a, tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %s, want %d with %s", tc.path, code, body, tc.code, tc.want)
		}
	}
	policyErr = context.DeadlineExceeded
	if code, body := get(t, a, "/v1/policy/endpoints"); code != http.StatusServiceUnavailable || !strings.Contains(body, "deadline") {
		t.Errorf("engine not answering: %d %s, want 503", code, body)
	}
	a = New(Config{Cluster: "cluster1", Node: "n1", State: st})
	if code, body := get(t, a, "/v1/policy/trace?from=default/a&to=default/b&port=80"); code != http.StatusServiceUnavailable || !strings.Contains(body, "does not compute policy") {
		t.Errorf("no engine: %d %s, want 503", code, body)
	}
}
