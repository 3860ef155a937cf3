// Command clustermesh-cni is the chained CNI plugin of clustermesh; see
// package cni.
package main

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/clustermesh/clustermesh/cni"
)

func main() {
	skel.PluginMainFuncs(cni.Funcs(context.Background()), cni.Versions, cni.About)
}
