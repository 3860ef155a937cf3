package cli_test

import (
	"strings"
	"testing"
)

// Bad flags of observe fail before any agent is asked, naming the flag.
func TestObserveFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--verdict", "denied"}, `--verdict "denied": want forwarded or dropped`},
		{[]string{"--from-pod", "x-wing"}, `--from-pod "x-wing": want <namespace>/<pod>`},
		{[]string{"--to-pod", "a/b/c"}, `--to-pod "a/b/c": want <namespace>/<pod>`},
		{[]string{"--from-cluster", "Cluster_1"}, `--from-cluster "Cluster_1": want a cluster name`},
		{[]string{"--label", ":x"}, `--label ":x": want a label`},
		{[]string{"--identity", "galaxy"}, `--identity "galaxy": want a numeric identity or a reserved identity's name`},
		{[]string{"--protocol", "quic"}, `--protocol "quic": want tcp, udp, icmp, icmpv6, sctp or a protocol number`},
		{[]string{"--port", "0"}, `--port "0": want a port number (1-65535)`},
		{[]string{"--service", "rebel-base"}, `--service "rebel-base": want <namespace>/<service>`},
		{[]string{"-n", "a/b"}, `--namespace "a/b": want a namespace name`},
		{[]string{"--since", "yesterday"}, `--since "yesterday": want a duration back from now such as 30s, 5m or 2h, or an RFC 3339 time`},
		{[]string{"--since", "-5m"}, `--since "-5m": want a duration back from now`},
		{[]string{"--last", "-1"}, `--last -1: want a positive number of flows`},
		{[]string{"-o", "yaml"}, `--output "yaml": use compact, json or table`},
		{[]string{"--agent-socket", "n1"}, `--agent-socket "n1": write it as <node>=<socket path>`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := run(t, append([]string{"observe", "--agent-socket", "n1=/nonexistent.sock"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
