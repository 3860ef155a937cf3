// Command clustermesh-demo runs the two-cluster demo on the bed (see
// package e2e/demo): real kube-apiservers and controller managers,
// clustermesh install/connect/status, clustermesh-apiservers, agents with
// the eBPF datapath and WireGuard in node namespaces, pods wired by the CNI
// chain, and real connections between them. It needs root.
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
