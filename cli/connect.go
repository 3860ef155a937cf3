package cli

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/clustermesh/clustermesh/cli/mesh"
)

// pairFlags are the flags of connect and disconnect.
type pairFlags struct {
	context      string
	destinations []string
	mode         string
}

func (f *pairFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.context, "context", "", "kubeconfig context of the source cluster (default: the current context)")
	fl.StringSliceVar(&f.destinations, "destination-context", nil, "kubeconfig context(s) of the other cluster(s); repeat or comma-separate")
	fl.StringVar(&f.mode, "connection-mode", "bidirectional",
		`"bidirectional": pair --context with each destination; "mesh": pair every two of --context and the destinations`)
}

// pairs loads the settings of every cluster named and returns the pairs.
func (f *pairFlags) pairs(ctx context.Context, g *globals) ([]mesh.Pair, error) {
	if len(f.destinations) == 0 {
		return nil, fmt.Errorf("--destination-context: required (the kubeconfig context of the cluster to pair with %q)", f.contextName())
	}
	contexts := append([]string{f.context}, f.destinations...)
	loaded := make([]*mesh.Settings, len(contexts))
	for i, c := range contexts {
		cl, _, err := g.cluster(c)
		if err != nil {
			return nil, err
		}
		for _, prev := range loaded[:i] {
			if prev.Cluster.Context == cl.Context {
				return nil, fmt.Errorf("context %q is given twice: name each cluster once", cl.Context)
			}
		}
		if loaded[i], err = mesh.Load(ctx, cl); err != nil {
			return nil, err
		}
	}
	var pairs []mesh.Pair
	switch f.mode {
	case "bidirectional":
		for _, d := range loaded[1:] {
			pairs = append(pairs, mesh.Pair{A: loaded[0], B: d})
		}
	case "mesh":
		for i, a := range loaded {
			for _, b := range loaded[i+1:] {
				pairs = append(pairs, mesh.Pair{A: a, B: b})
			}
		}
	default:
		return nil, fmt.Errorf("--connection-mode %q: use bidirectional or mesh", f.mode)
	}
	return pairs, nil
}

func (f *pairFlags) contextName() string {
	if f.context == "" {
		return "the current context"
	}
	return f.context
}

func newConnect(g *globals) *cobra.Command {
	f := &pairFlags{}
	cmd := &cobra.Command{
		Use:   "connect",
		Short: "Pair clusters: each one's agents read the other's etcd with their own read-only user",
		Long: `connect reads each cluster's mesh settings (ConfigMap clustermesh-config and the
etcd CA and admin Secrets that "clustermesh install" creates), checks that the
clusters can be meshed (different names and IDs, the same max connected
clusters, disjoint pod CIDRs, usable CAs), then, for each direction, creates a
read-only etcd user remote-<peer> in the exporting cluster's etcd with a
client certificate from its CA, and writes the peer's etcd client config and
certificates into the importing cluster's Secret clustermesh-peers, which the
agents mount.

The mesh Secret is read by the clustermesh-apiserver's cache of remote state,
which connects once to each peer for the whole cluster and serves it to the
agents from its own etcd (ConfigMap key cache: true, the default), or by
every agent, each connecting to every peer (cache: false); connect says
which for each cluster.

Running it again changes nothing. If a write fails, the writes made before it
are undone: no cluster is left reading a peer that does not read it back.`,
		Example: `  # Pair two clusters (both directions):
  clustermesh connect --context kind-c1 --destination-context kind-c2

  # Pair every two of three clusters:
  clustermesh connect --context kind-c1 --destination-context kind-c2,kind-c3 --connection-mode mesh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pairs, err := f.pairs(cmd.Context(), g)
			if err != nil {
				return err
			}
			res, err := mesh.Connect(cmd.Context(), pairs)
			if err != nil {
				return err
			}
			return writeResult(cmd.OutOrStdout(), res, "connected", pairs)
		},
	}
	f.add(cmd)
	return cmd
}

func newDisconnect(g *globals) *cobra.Command {
	f := &pairFlags{}
	cmd := &cobra.Command{
		Use:   "disconnect",
		Short: "Unpair clusters: remove each one's peer entry and the per-peer etcd users",
		Long: `disconnect removes, in both directions, the peer's entry from each cluster's
Secret clustermesh-peers (the agents then disconnect and drop the peer's
state) and deletes the per-peer etcd users, so the certificates issued for
them no longer log in. Running it again changes nothing; if it fails
halfway, run it again to finish.`,
		Example: `  clustermesh disconnect --context kind-c1 --destination-context kind-c2`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pairs, err := f.pairs(cmd.Context(), g)
			if err != nil {
				return err
			}
			res, err := mesh.Disconnect(cmd.Context(), pairs)
			if err != nil {
				for _, c := range res.Changes { // what was done before the failure
					fmt.Fprintln(cmd.ErrOrStderr(), c)
				}
				return err
			}
			return writeResult(cmd.OutOrStdout(), res, "disconnected", pairs)
		},
	}
	f.add(cmd)
	return cmd
}

func writeResult(w io.Writer, res mesh.Result, verb string, pairs []mesh.Pair) error {
	for _, c := range res.Changes {
		if _, err := fmt.Fprintln(w, c); err != nil {
			return err
		}
	}
	var names []string
	for _, p := range pairs {
		names = append(names, p.A.Name+" <-> "+p.B.Name)
	}
	slices.Sort(names)
	state := ""
	if len(res.Changes) == 0 {
		state = " (already: nothing changed)"
	}
	for _, n := range names {
		if _, err := fmt.Fprintf(w, "%s %s%s\n", verb, n, state); err != nil {
			return err
		}
	}
	if verb != "connected" {
		return nil
	}
	// How each cluster reads its new peers: through its
	// clustermesh-apiserver's cache, or every agent at the peer's etcd.
	var modes []string
	for _, p := range pairs {
		for _, l := range [][2]*mesh.Settings{{p.A, p.B}, {p.B, p.A}} {
			modes = append(modes, readMode(l[0], l[1]))
		}
	}
	slices.Sort(modes)
	for _, m := range slices.Compact(modes) {
		if _, err := fmt.Fprintln(w, m); err != nil {
			return err
		}
	}
	return nil
}

// readMode says how the agents of s read peer.
func readMode(s, peer *mesh.Settings) string {
	if s.Cache {
		return fmt.Sprintf("  %s reads %s through the cache of its clustermesh-apiserver (one connection for the cluster; %s: true)",
			s.Name, peer.Name, mesh.KeyCache)
	}
	return fmt.Sprintf("  %s reads %s from every agent (%s: false)", s.Name, peer.Name, mesh.KeyCache)
}
