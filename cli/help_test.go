package cli_test

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/clustermesh/clustermesh/cli"
)

// TestHelp: `clustermesh --help` and every subcommand's help show an
// example, as a new user types them.
func TestHelp(t *testing.T) {
	var walk func(*cobra.Command) []string
	walk = func(c *cobra.Command) []string {
		out := []string{c.CommandPath()}
		for _, sub := range c.Commands() {
			if sub.Name() != "help" && sub.Name() != "completion" {
				out = append(out, walk(sub)...)
			}
		}
		return out
	}
	paths := walk(cli.New())
	for _, want := range []string{"clustermesh connect", "clustermesh disconnect", "clustermesh status", "clustermesh install"} {
		if !strings.Contains(strings.Join(paths, ","), want) {
			t.Errorf("no command %q", want)
		}
	}
	for _, p := range paths {
		args := append(strings.Fields(p)[1:], "--help")
		out := mustRun(t, args...)
		if !strings.Contains(out, "Examples:\n  ") || !strings.Contains(out, "  clustermesh ") {
			t.Errorf("%s --help has no example:\n%s", p, out)
		}
	}
	if !strings.Contains(mustRun(t, "status", "--help"), "-o, --output string") {
		t.Error("status has no -o")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"connect", "--kubeconfig=/nonexistent"}, "--destination-context: required"},
		{[]string{"status", "-o", "xml"}, `--output "xml": use text, json or yaml`},
		{[]string{"status", "--agent-socket", "n1"}, `--agent-socket "n1": write it as <node>=<socket path>`},
		{[]string{"connect", "--kubeconfig=/nonexistent", "--destination-context", "b"}, "kubeconfig"},
		{[]string{"install", "--cluster-name", "c1", "--cluster-id", "1", "--pod-cidrs", "10.0.0.0/8"}, "--etcd-endpoints: required"},
	} {
		_, _, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("clustermesh %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
