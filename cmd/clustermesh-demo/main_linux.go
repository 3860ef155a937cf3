//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	dir, err := os.MkdirTemp("", "cm-demo")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	err = demo.Run(ctx, os.Stdout, dir)
	stop()
	bed.RemoveBinaries()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n(the bed's files and component logs are kept in %s)\n", err, dir)
		os.Exit(1)
	}
	_ = os.RemoveAll(dir)
}
