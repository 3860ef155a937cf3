package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// CompileOptions are a cross-compilation of the binaries for one platform.
type CompileOptions struct {
	// Go is the go command (default "go").
	Go string
	// ModuleDir is the directory `go build` runs in.
	ModuleDir string
	// Packages to build, e.g. ./cmd/clustermesh.
	Packages []string
	Platform v1.Platform
	// LDFlags are passed with -ldflags (the Makefile's, with the version).
	LDFlags string
	// OutDir receives one binary per package.
	OutDir string
	// Output receives go build's output (default: discarded unless it
	// fails, when it is in the error).
	Output io.Writer
}

// Compile builds static binaries (CGO_ENABLED=0, -trimpath,
// -buildvcs=false) for the platform. The Go build cache makes a second run cheap: the flags are
// the same each time.
func Compile(ctx context.Context, o CompileOptions) error {
	if o.Platform.OS == "" || o.Platform.Architecture == "" {
		return fmt.Errorf("compile: platform %q: want os/arch", o.Platform.String())
	}
	if len(o.Packages) == 0 {
		return fmt.Errorf("compile: no packages given")
	}
	goCmd := o.Go
	if goCmd == "" {
		goCmd = "go"
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return fmt.Errorf("compile: %w", err)
	}
	// -buildvcs=false: the commit is the one LDFlags set; the VCS stamp
	// (vcs.time, vcs.modified) would make the binaries depend on the
	// checkout's state rather than on its source.
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", o.LDFlags, "-o", o.OutDir + string(os.PathSeparator)}
	args = append(args, o.Packages...)
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = o.ModuleDir
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS="+o.Platform.OS, "GOARCH="+o.Platform.Architecture)
	if o.Platform.Architecture == "arm" && o.Platform.Variant != "" {
		env = append(env, "GOARM="+o.Platform.Variant[len("v"):])
	}
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if o.Output != nil {
		cmd.Stdout, cmd.Stderr = o.Output, o.Output
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s: %w\n%s", o.Platform.String(), err, out.String())
	}
	return nil
}
