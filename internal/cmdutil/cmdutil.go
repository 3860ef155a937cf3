// Package cmdutil is what the project's mains share: signal handling, exit
// codes and the logger.
package cmdutil

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/clustermesh/clustermesh/internal/version"
)

// Main runs cmd with a context that SIGINT and SIGTERM cancel, prints an
// error on stderr and exits 1 when the command fails. cmd gets --version:
// the build's version, commit, Go version and BPF objects.
func Main(cmd *cobra.Command) {
	SetVersion(cmd)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

// SetVersion gives cmd the --version flag (and the line it prints).
func SetVersion(cmd *cobra.Command) {
	cmd.Version = version.Get().String()
	cmd.SetVersionTemplate(cmd.Name() + " {{.Version}}\n")
}

// Logger returns the text logger for a --log-level value (debug, info,
// warn, error) and routes client-go's klog output to it.
func Logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
	klog.SetSlogLogger(log)
	return log, nil
}
