package cli

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/clustermesh/clustermesh/cli/agents"
	"github.com/clustermesh/clustermesh/cli/inventory"
)

// listRunE runs a list command: the agents of the cluster asked through
// list, the answer written as a table by table or in af's structured
// output.
func listRunE[T any](g *globals, af *agentFlags, list func(context.Context, []agents.Agent) (T, error), table func(io.Writer, T) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if err := checkTableOutput(af.output); err != nil {
			return err
		}
		src, err := af.agents(cmd, g, af.context)
		if err != nil {
			return err
		}
		res, err := list(cmd.Context(), src)
		if err != nil {
			return err
		}
		if af.output == "table" {
			return table(cmd.OutOrStdout(), res)
		}
		return writeStructured(cmd.OutOrStdout(), af.output, res)
	}
}

func newIdentity(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "identity",
		Short:   "Show the security identities the agents know, local and remote",
		Example: `  clustermesh identity list --context kind-c1`,
	}
	var (
		af      agentFlags
		cluster string
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the security identities of every cluster of the mesh with their labels",
		Long: `identity list asks the agents of a cluster (GET /v1/identities of their local
API) for the identities they know: the reserved ones, the local cluster's and
every connected peer's (only those a peer may announce: its own ID range and
cluster label), with their labels.`,
		Example: `  clustermesh identity list --context kind-c1
  clustermesh identity list --context kind-c1 --cluster cluster2 -o json`,
		Args: cobra.NoArgs,
		RunE: listRunE(g, &af, func(ctx context.Context, src []agents.Agent) (inventory.Identities, error) {
			return inventory.ListIdentities(ctx, src, cluster)
		}, inventory.WriteIdentities),
	}
	af.add(list)
	list.Flags().StringVar(&cluster, "cluster", "", "only the identities of this cluster")
	cmd.AddCommand(list)
	return cmd
}

func newEndpoint(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "endpoint",
		Short:   "Show the pods the agents manage",
		Example: `  clustermesh endpoint list --context kind-c1`,
	}
	var af agentFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List the pods of every node with their addresses, identity and policy enforcement",
		Long: `endpoint list asks every agent of a cluster (GET /v1/endpoints and
/v1/policies of their local API) for the pods of its node: addresses,
security identity and labels, and whether a policy isolates each on ingress
and egress ("enforced"), or not ("open"), or its policy is not computed yet
("pending").`,
		Example: `  clustermesh endpoint list --context kind-c1
  clustermesh endpoint list --agent-socket n1=/var/run/clustermesh/agent.sock -o yaml`,
		Args: cobra.NoArgs,
		RunE: listRunE(g, &af, inventory.ListEndpoints, inventory.WriteEndpoints),
	}
	af.add(list)
	cmd.AddCommand(list)
	return cmd
}

func newService(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "service",
		Short:   "Show the Services of a cluster and the backends new connections use",
		Example: `  clustermesh service list --context kind-c1`,
	}
	var (
		af  agentFlags
		all bool
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List every global Service with its backends per cluster, readiness, affinity, and which are selected now and why",
		Long: `service list asks an agent of the cluster (GET /v1/services/detail of its local
API) for every global Service: its affinity (none, local, remote), its
frontends, every candidate backend (the local ones with their readiness,
those each peer exports), which of them new connections use now (the
selection the datapath holds) and why the others are not used. Backends a
peer announced at addresses it does not own are counted as rejected.`,
		Example: `  clustermesh service list --context kind-c1
  clustermesh service list --context kind-c1 --all -o json`,
		Args: cobra.NoArgs,
		RunE: listRunE(g, &af, func(ctx context.Context, src []agents.Agent) (inventory.Services, error) {
			return inventory.ListServices(ctx, src, all)
		}, inventory.WriteServices),
	}
	af.add(list)
	list.Flags().BoolVar(&all, "all", false, "also the Services that are not global")
	cmd.AddCommand(list)
	return cmd
}
