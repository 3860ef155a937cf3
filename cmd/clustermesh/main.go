// Command clustermesh connects Kubernetes clusters into one mesh and
// shows whether it works. The commands live in package cli.
package main

import (
	"github.com/clustermesh/clustermesh/cli"
	"github.com/clustermesh/clustermesh/internal/cmdutil"
)

func main() { cmdutil.Main(cli.New()) }
