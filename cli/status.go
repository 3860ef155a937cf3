package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/cli/status"
)

func newStatus(g *globals) *cobra.Command {
	var (
		kubeContext string
		output      string
		wait        bool
		waitFor     time.Duration
		interval    time.Duration
		sockets     []string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether the mesh works: apiserver ready, peers configured, connected and synced on every node",
		Long: `status reads the cluster's clustermesh-apiserver (its Deployment, and its etcd
as admin: cluster config and exported prefixes), the peers configured in
Secret clustermesh-peers, and the status of every agent (GET /v1/status of
its local API, through the Kubernetes pod proxy to each agent pod's status
sidecar). It shows on how many nodes each peer is connected and which
prefixes are synced, and every error with a hint.

With --wait it polls until every agent is connected to and synced with
every configured peer, and fails at --wait-duration saying what is missing.`,
		Example: `  clustermesh status --context kind-c1
  clustermesh status --context kind-c1 --wait --wait-duration 5m
  clustermesh status --context kind-c1 -o json

  # On a node, or in tests: ask agents through their unix sockets directly.
  clustermesh status --agent-socket node1=/var/run/clustermesh/agent.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			bySocket := status.SocketSource{}
			for _, s := range sockets {
				node, path, ok := strings.Cut(s, "=")
				if !ok || node == "" || path == "" {
					return fmt.Errorf("--agent-socket %q: write it as <node>=<socket path>", s)
				}
				bySocket[node] = path
			}
			cl, _, err := g.cluster(kubeContext)
			if err != nil {
				return err
			}
			var src status.Source = status.ProxySource{Kube: cl.Kube, Namespace: cl.Namespace}
			if len(bySocket) > 0 {
				src = bySocket
			}
			get := func(ctx context.Context) (status.Report, error) {
				s, err := mesh.Load(ctx, cl)
				if err != nil {
					return status.Report{}, err
				}
				in, err := status.Collect(ctx, s, src)
				if err != nil {
					return status.Report{}, err
				}
				return status.Build(in), nil
			}
			var r status.Report
			if wait {
				r, err = status.Wait(cmd.Context(), get, waitFor, interval, cmd.ErrOrStderr())
				if err != nil && r.Cluster == "" {
					return err
				}
			} else if r, err = get(cmd.Context()); err != nil {
				return err
			}
			if werr := writeReport(cmd, output, r); werr != nil {
				return werr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&kubeContext, "context", "", "kubeconfig context of the cluster (default: the current context)")
	addOutputFlag(cmd, &output)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every node is connected to and synced with every configured peer")
	cmd.Flags().DurationVar(&waitFor, "wait-duration", 5*time.Minute, "how long --wait waits before failing")
	cmd.Flags().DurationVar(&interval, "wait-interval", 2*time.Second, "how often --wait checks")
	cmd.Flags().StringArrayVar(&sockets, "agent-socket", nil,
		"ask the agent of <node> at this unix socket instead of through the Kubernetes API (<node>=<path>, repeatable)")
	return cmd
}

func writeReport(cmd *cobra.Command, output string, r status.Report) error {
	if output == "text" {
		return status.WriteText(cmd.OutOrStdout(), r)
	}
	return writeStructured(cmd.OutOrStdout(), output, r)
}

func newAgentStatus() *cobra.Command {
	var socket, serve string
	cmd := &cobra.Command{
		Use:   "agent-status",
		Short: "Print (or serve) the status of the agent on this node, from its unix socket",
		Long: `agent-status prints GET /v1/status of the local agent as JSON. With --serve it
answers GET /v1/status on that address instead, until stopped: the chart runs
it as a sidecar of each agent so that "clustermesh status" reaches agents
through the Kubernetes pod proxy.`,
		Example: `  clustermesh agent-status --api-socket /var/run/clustermesh/agent.sock
  clustermesh agent-status --serve :9890`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if serve != "" {
				return status.Serve(cmd.Context(), serve, socket)
			}
			body, err := status.QueryRaw(cmd.Context(), socket)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(append(body, '\n'))
			return err
		},
	}
	cmd.Flags().StringVar(&socket, "api-socket", mesh.AgentSocket, "the agent's --api-socket")
	cmd.Flags().StringVar(&serve, "serve", "", "serve GET /v1/status on this address (e.g. :9890) instead of printing it")
	return cmd
}
