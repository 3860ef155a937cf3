package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/cli/mesh"
)

// globals are the flags every command shares.
type globals struct {
	kubeconfig string
	namespace  string
}

// New returns the `clustermesh` command.
func New() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "clustermesh",
		Short: "Connect Kubernetes clusters into one mesh and check that it works",
		Long: `clustermesh pairs Kubernetes clusters running the clustermesh-apiserver and
clustermesh-agent (installed with "clustermesh install" or the Helm chart in
charts/clustermesh), and tells whether the mesh works on every node.

Clusters are named by kubeconfig context, as with kubectl.`,
		Example: `  # Install the mesh components into two clusters:
  clustermesh install --context kind-c1 --cluster-name c1 --cluster-id 1 --pod-cidrs 10.1.0.0/16 --etcd-endpoints https://203.0.113.1:32379
  clustermesh install --context kind-c2 --cluster-name c2 --cluster-id 2 --pod-cidrs 10.2.0.0/16 --etcd-endpoints https://203.0.113.2:32379

  # Pair them, then wait until every node is connected:
  clustermesh connect --context kind-c1 --destination-context kind-c2
  clustermesh status --context kind-c1 --wait`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	pf.StringVarP(&g.namespace, "namespace", "n", mesh.DefaultNamespace, "namespace of the clustermesh components")
	root.AddCommand(newConnect(g), newDisconnect(g), newStatus(g), newInstall(g), newUninstall(g), newAgentStatus(), newObserve(g), newPolicy(g),
		newIdentity(g), newEndpoint(g), newService(g))
	return root
}

// cluster returns the cluster of a kubeconfig context ("" for the current
// one) and its REST config.
func (g *globals) cluster(context string) (*mesh.Cluster, *rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if g.kubeconfig != "" {
		rules.ExplicitPath = g.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	name := context
	if name == "" {
		name = raw.CurrentContext
	}
	if len(raw.Contexts) == 0 {
		return nil, nil, fmt.Errorf("no kubeconfig context found (in %s): set --kubeconfig or $KUBECONFIG", kubeconfigWhere(rules))
	}
	if _, ok := raw.Contexts[name]; !ok {
		var known []string
		for n := range raw.Contexts {
			known = append(known, n)
		}
		return nil, nil, fmt.Errorf("kubeconfig context %q not found (known: %v): pass one of them with --context, or set --kubeconfig", name, sortedStrings(known))
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("kubeconfig context %q: %w", name, err)
	}
	cfg.QPS, cfg.Burst = 50, 100 // status --wait polls; kubectl's own defaults are as high
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client for context %q: %w", name, err)
	}
	return &mesh.Cluster{Context: name, Namespace: g.namespace, Kube: kube}, cfg, nil
}

func addOutputFlag(cmd *cobra.Command, o *string) {
	cmd.Flags().StringVarP(o, "output", "o", "text", "output format: text, json or yaml")
}

func checkOutput(o string) error {
	switch o {
	case "text", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output %q: use text, json or yaml", o)
}

// writeStructured writes v as JSON (indented, stable) or YAML.
func writeStructured(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = w.Write(b)
	return err
}

func sortedStrings(s []string) []string {
	slices.Sort(s)
	return s
}

func kubeconfigWhere(rules *clientcmd.ClientConfigLoadingRules) string {
	if rules.ExplicitPath != "" {
		return rules.ExplicitPath
	}
	return strings.Join(rules.Precedence, ", ")
}
