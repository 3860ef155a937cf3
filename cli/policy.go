package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/clustermesh/clustermesh/cli/agents"
	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/cli/policytrace"
)

// agentFlags are the flags of the read commands that ask the agents of a
// cluster: its kubeconfig context, the components' namespace, or unix
// sockets instead.
type agentFlags struct {
	context, meshNamespace, output string
	sockets                        []string
}

func (f *agentFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.context, "context", "", "kubeconfig context of the cluster (default: the current context)")
	fl.StringVar(&f.meshNamespace, "clustermesh-namespace", mesh.DefaultNamespace, "namespace of the clustermesh components (the agent pods)")
	fl.StringArrayVar(&f.sockets, "agent-socket", nil,
		"ask the agent of <node> at this unix socket instead of through the Kubernetes API (<node>=<path>, repeatable)")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table, json or yaml")
}

func checkTableOutput(o string) error {
	switch o {
	case "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output %q: use table, json or yaml", o)
}

// agents returns the agents of context (sockets, when given, instead).
func (f *agentFlags) agents(cmd *cobra.Command, g *globals, context string) ([]agents.Agent, error) {
	var src agents.Source
	if len(f.sockets) > 0 {
		s, err := agents.ParseSockets("agent-socket", f.sockets)
		if err != nil {
			return nil, err
		}
		src = s
	} else {
		cl, _, err := g.cluster(context)
		if err != nil {
			return nil, err
		}
		src = agents.Proxy{Kube: cl.Kube, Namespace: f.meshNamespace}
	}
	return src.Agents(cmd.Context())
}

func newPolicy(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Explain the network policy the agents enforce: trace a flow, list the policies of endpoints",
		Example: `  clustermesh policy trace --context kind-c2 --from cluster1/default/x-wing --to default/rebel-base-a --port 80/TCP
  clustermesh policy get --context kind-c2 default/rebel-base-a`,
	}
	cmd.AddCommand(newPolicyTrace(g), newPolicyGet(g))
	return cmd
}

func newPolicyTrace(g *globals) *cobra.Command {
	var (
		af                   agentFlags
		from, to, port, fctx string
	)
	cmd := &cobra.Command{
		Use:   "trace --from [cluster/]namespace/pod --to [cluster/]namespace/pod --port 80/TCP",
		Short: "Tell whether a new connection from one pod to another is allowed, and which policy and rule decide",
		Long: `policy trace asks the agents' own policy engines (GET /v1/policy/trace of
their local API, the computed policy the datapath enforces) for the verdict
of a new connection: the destination's agent on ingress, the source's agent
on egress. Each says which policy and rule allowed or denied it, that no
policy selects the pod in that direction (allowed by default), or which
policies isolate it when no rule allows.

A pod is <namespace>/<pod> or <cluster>/<namespace>/<pod>. Without a cluster,
--to is in the cluster of --context and --from in the cluster of
--from-context (default: --context). The source may be in another cluster:
the destination's agent knows its identity from the mesh; to evaluate its
egress too, pass its cluster's context with --from-context.`,
		Example: `  # Why can't tie-fighter of cluster1 reach rebel-base-a of cluster2?
  clustermesh policy trace --context kind-c2 --from-context kind-c1 \
    --from cluster1/default/tie-fighter --to default/rebel-base-a --port 80/TCP

  # On a node, or in tests: ask agents through their unix sockets directly.
  clustermesh policy trace --agent-socket n1=/var/run/clustermesh/agent.sock \
    --from default/x-wing --to default/rebel-base --port 80 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkTableOutput(af.output); err != nil {
				return err
			}
			if from == "" || to == "" || port == "" {
				return fmt.Errorf("--from, --to and --port are required, like --from default/x-wing --to cluster2/default/rebel-base --port 80/TCP")
			}
			q := policytrace.Query{From: from, To: to}
			var err error
			if q.Port, q.Protocol, err = policytrace.ParsePort(port); err != nil {
				return err
			}
			ctx := cmd.Context()
			all, err := af.agents(cmd, g, af.context)
			if err != nil {
				return err
			}
			if len(af.sockets) == 0 {
				if q.ToCluster, err = agents.ClusterOf(ctx, all); err != nil {
					return err
				}
				if fctx != "" && fctx != af.context {
					fromAgents, err := af.agents(cmd, g, fctx)
					if err != nil {
						return fmt.Errorf("--from-context %s: %w", fctx, err)
					}
					if q.FromCluster, err = agents.ClusterOf(ctx, fromAgents); err != nil {
						return fmt.Errorf("--from-context %s: %w", fctx, err)
					}
					all = append(all, fromAgents...)
				}
			} else if fctx != "" {
				return fmt.Errorf("--from-context with --agent-socket: give the sockets of both clusters' nodes and write the pods as <cluster>/<namespace>/<pod>")
			}
			res, err := policytrace.Trace(ctx, all, q)
			if err != nil {
				return err
			}
			if af.output == "table" {
				return policytrace.WriteTable(cmd.OutOrStdout(), res)
			}
			return writeStructured(cmd.OutOrStdout(), af.output, res)
		},
	}
	af.add(cmd)
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the source pod: [cluster/]namespace/pod")
	f.StringVar(&to, "to", "", "the destination pod: [cluster/]namespace/pod")
	f.StringVar(&port, "port", "", "the destination port and protocol: <port>[/TCP|UDP|SCTP] (TCP by default)")
	f.StringVar(&fctx, "from-context", "", "kubeconfig context of the source pod's cluster, when not that of --context")
	return cmd
}

func newPolicyGet(g *globals) *cobra.Command {
	var af agentFlags
	cmd := &cobra.Command{
		Use:   "get [namespace/pod]",
		Short: "List the endpoints of a cluster with the policies that select them and the rules that apply",
		Long: `policy get asks every agent of the cluster (GET /v1/policy/endpoints of its
local API) which policies select each of its endpoints, whether ingress and
egress are enforced (isolated), and which rules of each policy apply to it
(the place of the rule in the policy, as policy trace names it).`,
		Example: `  clustermesh policy get --context kind-c2
  clustermesh policy get --context kind-c2 default/rebel-base-a -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTableOutput(af.output); err != nil {
				return err
			}
			all, err := af.agents(cmd, g, af.context)
			if err != nil {
				return err
			}
			pod := ""
			if len(args) == 1 {
				pod = args[0]
			}
			res, err := policytrace.Get(cmd.Context(), all, pod)
			if err != nil {
				return err
			}
			if af.output == "table" {
				return policytrace.WriteGetTable(cmd.OutOrStdout(), res)
			}
			return writeStructured(cmd.OutOrStdout(), af.output, res)
		},
	}
	af.add(cmd)
	return cmd
}
