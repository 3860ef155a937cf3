// Command clustermesh-demo runs the two-cluster demo (see package
// e2e/demo): two real Kubernetes API servers, the clustermesh-apiserver of
// each, `clustermesh install` and `connect`, an agent per node, a global
// Service and a cross-cluster policy, each step checked.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/clustermesh/clustermesh/e2e/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "clustermesh-demo")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	err = demo.Run(ctx, os.Stdout, dir)
	_ = os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}
