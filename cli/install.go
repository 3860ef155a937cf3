package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	chart "github.com/clustermesh/clustermesh/charts/clustermesh"
	"github.com/clustermesh/clustermesh/cli/install"
	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/identity"
)

type installFlags struct {
	context     string
	name        string
	id          uint32
	maxClusters uint32
	podCIDRs    []string
	endpoints   []string
	image       string
	serviceType string
	dryRun      bool
}

func (f *installFlags) validate() error {
	if err := identity.ValidateClusterName(f.name); err != nil {
		return fmt.Errorf("--cluster-name %q: %w", f.name, err)
	}
	layout, err := identity.NewLayout(f.maxClusters)
	if err != nil {
		return fmt.Errorf("--max-connected-clusters: %w", err)
	}
	if err := layout.ValidateClusterID(identity.ClusterID(f.id)); err != nil {
		return fmt.Errorf("--cluster-id: %w", err)
	}
	if len(f.podCIDRs) == 0 {
		return fmt.Errorf("--pod-cidrs: required (the cluster's pod CIDRs, e.g. 10.1.0.0/16; they must not overlap with any peer's)")
	}
	for _, c := range f.podCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("--pod-cidrs %q: not a CIDR like 10.1.0.0/16", c)
		}
	}
	if len(f.endpoints) == 0 {
		return fmt.Errorf("--etcd-endpoints: required (the URL(s) at which peer clusters reach this cluster's clustermesh-apiserver, " +
			"e.g. https://<node IP>:32379 with the default NodePort Service)")
	}
	switch f.serviceType {
	case "NodePort", "LoadBalancer", "ClusterIP":
	default:
		return fmt.Errorf("--service-type %q: use NodePort, LoadBalancer or ClusterIP", f.serviceType)
	}
	return nil
}

func newInstall(g *globals) *cobra.Command {
	f := &installFlags{}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the mesh components into a cluster (or print their manifests with --dry-run)",
		Long: `install installs the Helm chart charts/clustermesh (CRDs, RBAC, the
clustermesh-apiserver Deployment and Service, the clustermesh-agent DaemonSet,
ConfigMap clustermesh-config and the certificate Secrets) through Helm's SDK as
the release "clustermesh" of the namespace, or upgrades that release when it
exists (helm status/history/upgrade/uninstall see it), with server-side apply. It generates the cluster's etcd CA, the etcd server
certificate and the admin client certificate, and keeps the installed ones
while they are good, so that running it again (e.g. to upgrade) keeps every
pairing; the peers in Secret clustermesh-peers are never touched. Running the
next version's install upgrades in place; "clustermesh uninstall" removes it.`,
		Example: `  clustermesh install --context kind-c1 --cluster-name c1 --cluster-id 1 \
    --pod-cidrs 10.1.0.0/16 --etcd-endpoints https://172.18.0.2:32379

  # Print the manifests instead of applying them:
  clustermesh install --context kind-c1 --cluster-name c1 --cluster-id 1 \
    --pod-cidrs 10.1.0.0/16 --etcd-endpoints https://172.18.0.2:32379 --dry-run > c1.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			return runInstall(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.context, "context", "", "kubeconfig context of the cluster (default: the current context)")
	fl.StringVar(&f.name, "cluster-name", "", "name of the cluster, unique in the mesh (required)")
	fl.Uint32Var(&f.id, "cluster-id", 0, "ID of the cluster, 1..max-connected-clusters, unique in the mesh (required)")
	fl.Uint32Var(&f.maxClusters, "max-connected-clusters", 255, "255 or 511; the same in every cluster of the mesh")
	fl.StringSliceVar(&f.podCIDRs, "pod-cidrs", nil, "the cluster's pod CIDRs (required)")
	fl.StringSliceVar(&f.endpoints, "etcd-endpoints", nil, "URL(s) at which peers reach this cluster's etcd (required)")
	fl.StringVar(&f.image, "image", "", "image of the clustermesh binaries (default: the chart's)")
	fl.StringVar(&f.serviceType, "service-type", "NodePort", "type of the clustermesh-apiserver Service: NodePort, LoadBalancer or ClusterIP")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the manifests instead of applying them")
	return cmd
}

func runInstall(cmd *cobra.Command, g *globals, f *installFlags) error {
	ctx := cmd.Context()
	cl, _, err := g.cluster(f.context)
	if err != nil {
		return err
	}
	existing, err := installedSecrets(ctx, cl)
	if err != nil {
		return err
	}
	if err := checkRename(ctx, cl, f); err != nil {
		return err
	}
	dns, ips, err := install.ServerNames(cl.Namespace, f.endpoints)
	if err != nil {
		return err
	}
	certs, reissued, err := install.EnsureCerts(f.name, existing, dns, ips)
	if err != nil {
		return fmt.Errorf("%s: %w", cl, err)
	}
	values := map[string]any{
		"cluster": map[string]any{"name": f.name, "id": f.id, "maxConnectedClusters": f.maxClusters, "podCIDRs": toAny(f.podCIDRs)},
		"apiserver": map[string]any{
			"etcdEndpoints": toAny(f.endpoints),
			"service":       map[string]any{"type": f.serviceType},
		},
		"tls": certs.Values(),
	}
	if f.image != "" {
		repo, tag := splitImage(f.image)
		values["image"] = map[string]any{"repository": repo, "tag": tag}
	}
	c, err := chart.Load()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f.dryRun {
		manifests, err := install.Render(ctx, c, cl.Namespace, values)
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(out, manifests)
		return err
	}
	if err := ensureNamespace(ctx, cl); err != nil {
		return err
	}
	res, err := install.Deploy(ctx, g.restGetter(f.context, cl.Namespace), cl.Namespace, c, values)
	if err != nil {
		return fmt.Errorf("install into %s: %w; run the same install again to finish", cl, err)
	}
	for _, r := range reissued {
		fmt.Fprintf(out, "generated the %s\n", r)
	}
	verb := "installed"
	if res.Upgraded {
		verb = "upgraded"
	}
	fmt.Fprintf(out, "%s cluster %s (ID %d) into %s, namespace %s: Helm release %s revision %d, %d objects (helm status %s -n %s)\n",
		verb, f.name, f.id, cl, cl.Namespace, install.ReleaseName, res.Revision, res.Objects, install.ReleaseName, cl.Namespace)
	fmt.Fprintf(out, "next: clustermesh connect --context %s --destination-context <other cluster's context>\n", cl.Context)
	return nil
}

// installedSecrets returns the data of the installed certificate Secrets.
func installedSecrets(ctx context.Context, cl *mesh.Cluster) (map[string]map[string][]byte, error) {
	out := map[string]map[string][]byte{}
	for _, name := range []string{mesh.CASecretName, mesh.ServerSecretName, mesh.AdminSecretName, mesh.LocalSecretName} {
		s, err := cl.Kube.CoreV1().Secrets(cl.Namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("read Secret %s/%s in %s: %w", cl.Namespace, name, cl, err)
		default:
			out[name] = s.Data
		}
	}
	return out, nil
}

// checkRename refuses to rename or renumber a cluster that has peers: they
// know it by its name and ID.
func checkRename(ctx context.Context, cl *mesh.Cluster, f *installFlags) error {
	cm, err := cl.Kube.CoreV1().ConfigMaps(cl.Namespace).Get(ctx, mesh.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		return nil // not installed yet (or unreadable: apply will say)
	}
	sec, err := cl.Kube.CoreV1().Secrets(cl.Namespace).Get(ctx, mesh.PeersSecretName, metav1.GetOptions{})
	if err != nil {
		return nil // no peers to protect
	}
	peers := mesh.ConfiguredPeers(sec)
	oldName, oldID := cm.Data[mesh.KeyClusterName], cm.Data[mesh.KeyClusterID]
	newID := strconv.FormatUint(uint64(f.id), 10)
	if len(peers) > 0 && (oldName != f.name || oldID != newID) {
		return fmt.Errorf("%s is installed as cluster %s (ID %s) and connected to %v: its peers know it by that name and ID; "+
			"run `clustermesh disconnect` for each peer before installing it as %s (ID %s)", cl, oldName, oldID, peers, f.name, newID)
	}
	return nil
}

func ensureNamespace(ctx context.Context, cl *mesh.Cluster) error {
	_, err := cl.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cl.Namespace,
		Labels: map[string]string{install.NamespaceLabel: install.NamespaceLabelValue}}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s in %s: %w", cl.Namespace, cl, err)
	}
	return nil
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// splitImage splits repo:tag (a registry port is not a tag).
func splitImage(image string) (repo, tag string) {
	for i := len(image) - 1; i >= 0; i-- {
		switch image[i] {
		case ':':
			return image[:i], image[i+1:]
		case '/':
			return image, ""
		}
	}
	return image, ""
}

// restGetter is the kubeconfig context as Helm's SDK takes it.
func (g *globals) restGetter(context, namespace string) genericclioptions.RESTClientGetter {
	f := genericclioptions.NewConfigFlags(true)
	if g.kubeconfig != "" {
		f.KubeConfig = &g.kubeconfig
	}
	if context != "" {
		f.Context = &context
	}
	f.Namespace = &namespace
	return f
}
