package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/cli/observe"
)

// defaultLast is how many flows observe shows without --last, --since or
// --follow.
const defaultLast = 20

func newObserve(g *globals) *cobra.Command {
	var (
		kubeContext, meshNamespace, output, since string
		last                                      int
		follow                                    bool
		sockets                                   []string
		filters                                   = map[string]*[]string{}
	)
	cmd := &cobra.Command{
		Use:   "observe",
		Short: "Show the flows of every node of a cluster: connections and drops with both ends' pods, identities and clusters",
		Long: `observe reads the flows of every agent of a cluster (GET /v1/flows of its
local API, through the Kubernetes pod proxy to each agent pod's status
sidecar) and prints them in time order: every drop, the first packet of
every forwarded connection (as sampled by the agents' --flows-allowed-sample)
and its first reply, with both ends resolved to cluster/namespace/pod,
identity and labels, or a node, a CIDR, the world. A connection to a
Service's ClusterIP, which the agents' socket load balancing translates to
a backend, shows the Service, the frontend and the backend chosen with its
cluster (on the client's node, egress).

Filters run on the agents and combine: every flag given must match, a flag
given several times matches any of its values. Without --last, --since or
--follow it shows the last 20 flows. Events the agents lost (their ring
buffer full, a slow stream) are said on stderr, lines starting with '#'.

Here -n/--namespace is a filter (a flow's namespace, as in hubble observe);
the namespace of the mesh components is --clustermesh-namespace.`,
		Example: `  # The drops of the last 5 minutes, then new ones as they happen:
  clustermesh observe --context kind-c1 --verdict dropped --since 5m --follow

  # Why can't x-wing reach rebel-base?
  clustermesh observe --context kind-c1 --from-pod default/x-wing --to-pod default/rebel-base

  # Which backends, in which clusters, serve default/rebel-base's ClusterIP?
  clustermesh observe --context kind-c1 --service default/rebel-base

  # Everything from cluster2 on port 80, as JSON lines:
  clustermesh observe --context kind-c1 --from-cluster cluster2 --port 80 -o json

  # On a node, or in tests: ask agents through their unix sockets directly.
  clustermesh observe --agent-socket node1=/var/run/clustermesh/agent.sock --last 100`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := observeRequest(filters, last, since, follow, time.Now())
			if err != nil {
				return err
			}
			printer, err := observe.NewPrinter(output, cmd.OutOrStdout(), time.Local)
			if err != nil {
				return err
			}
			bySocket := observe.SocketSource{}
			for _, s := range sockets {
				node, path, ok := strings.Cut(s, "=")
				if !ok || node == "" || path == "" {
					return fmt.Errorf("--agent-socket %q: write it as <node>=<socket path>", s)
				}
				bySocket[node] = path
			}
			var src observe.Source = bySocket
			if len(bySocket) == 0 {
				cl, _, err := g.cluster(kubeContext)
				if err != nil {
					return err
				}
				src = observe.ProxySource{Kube: cl.Kube, Namespace: meshNamespace}
			}
			return observe.Run(cmd.Context(), src, observe.Options{Request: req, Printer: printer, Warn: cmd.ErrOrStderr()})
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeContext, "context", "", "kubeconfig context of the cluster (default: the current context)")
	f.StringVar(&meshNamespace, "clustermesh-namespace", mesh.DefaultNamespace, "namespace of the clustermesh components (the agent pods)")
	f.StringVarP(&output, "output", "o", observe.OutputCompact, "output format: compact (one line per flow), json (one flow object per line) or table")
	f.IntVar(&last, "last", 0, fmt.Sprintf("show the last N flows of the cluster (default %d without --since or --follow)", defaultLast))
	f.StringVar(&since, "since", "", "show flows after this time: a duration back from now (30s, 5m, 2h) or an RFC 3339 time")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new flows as they happen, until interrupted")
	f.StringArrayVar(&sockets, "agent-socket", nil,
		"ask the agent of <node> at this unix socket instead of through the Kubernetes API (<node>=<path>, repeatable)")
	for _, fl := range []struct{ name, short, usage string }{
		{flowapi.ParamFromPod, "", "flows from this pod: <namespace>/<pod>"},
		{flowapi.ParamToPod, "", "flows to this pod: <namespace>/<pod>"},
		{flowapi.ParamFromCluster, "", "flows from this cluster"},
		{flowapi.ParamToCluster, "", "flows to this cluster"},
		// -n as in hubble observe; the components' namespace is
		// --clustermesh-namespace.
		{flowapi.ParamNamespace, "n", "flows from or to this namespace"},
		{flowapi.ParamLabel, "", "flows from or to an identity with this label: [source:]key[=value], e.g. app=x-wing"},
		{flowapi.ParamIdentity, "", "flows from or to this identity: a number or a reserved name (world, host, remote-node, ...)"},
		{flowapi.ParamVerdict, "", "forwarded or dropped"},
		{flowapi.ParamProtocol, "", "tcp, udp, icmp, icmpv6, sctp or a protocol number"},
		{flowapi.ParamPort, "", "flows from or to this port"},
		{flowapi.ParamService, "", "flows to a backend of this Service through its ClusterIP (socket load balancing): <namespace>/<service>"},
	} {
		v := []string{}
		filters[fl.name] = &v
		f.StringArrayVarP(&v, fl.name, fl.short, nil, fl.usage+" (repeatable: any of them)")
	}
	return cmd
}

// observeRequest builds the agents' request from observe's flags; every
// error names its flag.
func observeRequest(filters map[string]*[]string, last int, since string, follow bool, now time.Time) (flowapi.Request, error) {
	q := url.Values{}
	for name, vs := range filters {
		if len(*vs) > 0 {
			q[name] = *vs
		}
	}
	filter, err := flowapi.ParseFilter(q)
	if err != nil {
		if pe, ok := errors.AsType[*flowapi.ParamError](err); ok {
			return flowapi.Request{}, errors.New(pe.FlagError())
		}
		return flowapi.Request{}, err
	}
	req := flowapi.Request{Last: last, Follow: follow, Filter: filter}
	if last < 0 {
		return req, fmt.Errorf("--last %d: want a positive number of flows", last)
	}
	if since != "" {
		t, err := parseSince(since, now)
		if err != nil {
			return req, err
		}
		req.Since = t
	}
	if req.Last == 0 && req.Since.IsZero() && !follow {
		req.Last = defaultLast
	}
	return req, nil
}

// parseSince reads --since: a duration back from now or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration back from now such as 30s, 5m or 2h, or an RFC 3339 time such as 2006-01-02T15:04:05Z", s)
}
