// Command meshecho is the test bed's pod workload: it answers on TCP and
// UDP with its pod and cluster name, and makes connections from the pod on
// request through its control socket (see package e2e/workload).
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/clustermesh/clustermesh/e2e/workload"
	"github.com/clustermesh/clustermesh/internal/cmdutil"
)

func main() { cmdutil.Main(newCommand()) }

func newCommand() *cobra.Command {
	var cfg workload.Config
	var logLevel string
	cmd := &cobra.Command{
		Use:           "meshecho",
		Short:         "Answer on TCP and UDP with this pod's cluster/namespace/pod, and connect from the pod on request",
		Example:       `  meshecho --cluster cluster1 --namespace default --pod x-wing --port 80 --control /run/x-wing.sock`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cmdutil.Logger(logLevel)
			if err != nil {
				return err
			}
			return workload.Run(cmd.Context(), cfg, log, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Cluster, "cluster", "", "the cluster's name, in every answer")
	f.StringVar(&cfg.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the pod's namespace, in every answer")
	f.StringVar(&cfg.Pod, "pod", os.Getenv("POD_NAME"), "the pod's name, in every answer")
	f.IntVar(&cfg.Port, "port", 80, "TCP and UDP port to answer on")
	f.StringVar(&cfg.ControlSocket, "control", "", "unix socket of the control API (connections from the pod on request)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
