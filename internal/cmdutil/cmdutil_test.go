package cmdutil

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/clustermesh/clustermesh/internal/version"
)

// TestVersionFlag: --version prints the command's name and the build's
// line, and runs nothing.
func TestVersionFlag(t *testing.T) {
	ran := false
	cmd := &cobra.Command{Use: "clustermesh-x", RunE: func(*cobra.Command, []string) error { ran = true; return nil }}
	SetVersion(cmd)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	if want := "clustermesh-x " + version.Get().String() + "\n"; out.String() != want || ran {
		t.Errorf("--version printed %q (ran: %v), want %q", out.String(), ran, want)
	}
	if !strings.Contains(out.String(), version.Get().GoVersion) {
		t.Errorf("--version %q lacks the Go version", out.String())
	}
}
