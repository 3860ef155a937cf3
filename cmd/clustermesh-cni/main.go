// Command clustermesh-cni is the chained CNI plugin of clustermesh; see
// package cni. Run by a container runtime it is a CNI plugin;
// "clustermesh-cni install <dir>" copies it into a CNI bin directory (the
// agent DaemonSet's init container does that on every node).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/clustermesh/clustermesh/cni"
	"github.com/clustermesh/clustermesh/internal/version"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" && os.Getenv("CNI_COMMAND") == "" {
		fmt.Println(cni.BinaryName, version.Get())
		return
	}
	if len(os.Args) == 2 && (os.Args[1] == "--help" || os.Args[1] == "-h") && os.Getenv("CNI_COMMAND") == "" {
		fmt.Println(usage)
		return
	}
	if len(os.Args) > 1 && os.Getenv("CNI_COMMAND") == "" {
		os.Exit(install(os.Args[1:]))
	}
	skel.PluginMainFuncs(cni.Funcs(context.Background()), cni.Versions, cni.About)
}

const usage = `usage: clustermesh-cni install <cni-bin-dir> | --version | --help

clustermesh-cni is the chained CNI plugin of clustermesh: the container
runtime runs it (with CNI_COMMAND set, no arguments) after the node's main
plugin. "install <cni-bin-dir>" copies it into the runtime's CNI bin
directory (the agent DaemonSet's init container does that on every node).`

func install(args []string) int {
	if len(args) != 2 || args[0] != "install" {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	self, err := os.Executable()
	if err == nil {
		err = cni.Install(self, args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("installed %s into %s\n", cni.BinaryName, args[1])
	return 0
}
