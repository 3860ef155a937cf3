package cli_test

import (
	"strings"
	"testing"
)

// The read commands refuse bad flags naming them, before asking anyone.
func TestPolicyUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "trace", "--from", "default/a", "--to", "default/b"}, "--from, --to and --port are required"},
		{[]string{"policy", "trace", "--from", "default/a", "--to", "default/b", "--port", "80/ICMP"}, `--port "80/ICMP": protocol "ICMP" is not TCP, UDP or SCTP`},
		{[]string{"policy", "trace", "--from", "default/a", "--to", "default/b", "--port", "80", "-o", "xml"}, `--output "xml": use table, json or yaml`},
		{[]string{"policy", "trace", "--from", "default/a", "--to", "default/b", "--port", "80", "--agent-socket", "n1"}, `--agent-socket "n1": write it as <node>=<socket path>`},
		{[]string{"policy", "trace", "--from", "default/a", "--to", "default/b", "--port", "80", "--agent-socket", "n1=/nonexistent.sock"}, "no agent could be asked"},
		{[]string{"policy", "get", "a", "b"}, "accepts at most 1 arg"},
		{[]string{"identity", "list", "-o", "xml"}, `--output "xml": use table, json or yaml`},
		{[]string{"endpoint", "list", "--agent-socket", "n1"}, `--agent-socket "n1": write it as <node>=<socket path>`},
		{[]string{"endpoint", "list", "--agent-socket", "n1=/nonexistent.sock"}, "no agent answered GET /v1/endpoints"},
		{[]string{"service", "list", "--agent-socket", "n1=/nonexistent.sock", "-o", "json"}, "no agent answered GET /v1/services/detail"},
		{[]string{"identity", "list", "--cluster", "c2", "--agent-socket", "n1=/nonexistent.sock"}, "no agent answered GET /v1/identities"},
	} {
		_, _, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("clustermesh %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
