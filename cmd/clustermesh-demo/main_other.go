//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "clustermesh-demo runs clusters in Linux network namespaces with eBPF and WireGuard: run it on Linux, as root")
	os.Exit(1)
}
