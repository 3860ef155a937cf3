package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	chart "github.com/clustermesh/clustermesh/charts/clustermesh"
	"github.com/clustermesh/clustermesh/cli/install"
	"github.com/clustermesh/clustermesh/cli/mesh"
)

type uninstallFlags struct {
	context string
	force   bool
}

func newUninstall(g *globals) *cobra.Command {
	f := &uninstallFlags{}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what install created from a cluster (refused while peers are connected, unless --force)",
		Long: `uninstall removes what "clustermesh install" created: the Helm release
"clustermesh" of the namespace with all its objects (through Helm's SDK, as
helm uninstall does), the mesh Secret clustermesh-peers (which the release
keeps on helm uninstall), the chart's CRDs (unless policies remain in them:
deleting a CRD deletes its objects) and the namespace when install created it.

It refuses while the mesh Secret records peers: run "clustermesh disconnect"
with each peer first, so that both sides forget the pairing. With --force it
empties the mesh Secret first (the local side stops reading its peers), then
uninstalls, and prints what remains on each peer (its entries for this
cluster, which its agents keep trying to read) and how to remove it.

Running it again finishes an interrupted uninstall; on a cluster without
anything installed it changes nothing. What the agents keep on each node
(pinned BPF maps, the CNI plugin, the WireGuard key, under the chart's
hostPaths) is not removed.`,
		Example: `  clustermesh disconnect --context kind-c1 --destination-context kind-c2
  clustermesh uninstall --context kind-c1

  # A peer that is gone for good: forget it locally, then uninstall.
  clustermesh uninstall --context kind-c1 --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUninstall(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.context, "context", "", "kubeconfig context of the cluster (default: the current context)")
	fl.BoolVar(&f.force, "force", false, "uninstall even while peers are connected: forget them locally and print what remains on them")
	return cmd
}

func runUninstall(cmd *cobra.Command, g *globals, f *uninstallFlags) error {
	ctx := cmd.Context()
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	cl, _, err := g.cluster(f.context)
	if err != nil {
		return err
	}
	name := installedName(ctx, cl)
	peers, err := mesh.Peers(ctx, cl)
	if err != nil {
		return err
	}
	if len(peers) > 0 && !f.force {
		return fmt.Errorf("%s (cluster %s) is connected to %s (Secret %s/%s): run `clustermesh disconnect --context %s --destination-context <context of %s>` "+
			"for each peer first, so that both sides forget the pairing; or uninstall with --force to forget the peers on this side only",
			cl, name, strings.Join(peers, ", "), cl.Namespace, mesh.PeersSecretName, cl.Context, peerWord(peers))
	}
	if len(peers) > 0 {
		if _, err := mesh.ForgetPeers(ctx, cl); err != nil {
			return err
		}
		fmt.Fprintf(errOut, "warning: --force: removed the peers %s from Secret %s/%s in %s; they were not told:\n",
			strings.Join(peers, ", "), cl.Namespace, mesh.PeersSecretName, cl)
		for _, p := range peers {
			fmt.Fprintf(errOut, "  %s\n", mesh.RemoteLeftovers(name, p, cl.Namespace))
		}
	}
	c, err := chart.Load()
	if err != nil {
		return err
	}
	res, err := install.Uninstall(ctx, g.restGetter(f.context, cl.Namespace), cl.Namespace, c)
	if err != nil {
		return fmt.Errorf("uninstall from %s: %w", cl, err)
	}
	secretGone, err := deleteMeshSecret(ctx, cl)
	if err != nil {
		return err
	}
	nsGone, err := deleteNamespace(ctx, cl)
	if err != nil {
		return err
	}
	return writeUninstall(out, cl, res, secretGone, nsGone)
}

// installedName is the cluster's name in the mesh, from the installed
// ConfigMap ("<this cluster>" when it is gone or unreadable).
func installedName(ctx context.Context, cl *mesh.Cluster) string {
	cm, err := cl.Kube.CoreV1().ConfigMaps(cl.Namespace).Get(ctx, mesh.ConfigMapName, metav1.GetOptions{})
	if err != nil || cm.Data[mesh.KeyClusterName] == "" {
		return "<this cluster>"
	}
	return cm.Data[mesh.KeyClusterName]
}

func peerWord(peers []string) string {
	if len(peers) == 1 {
		return peers[0]
	}
	return "each"
}

// deleteMeshSecret deletes the mesh Secret the release keeps (its
// resource policy), when it is the release's.
func deleteMeshSecret(ctx context.Context, cl *mesh.Cluster) (bool, error) {
	api := cl.Kube.CoreV1().Secrets(cl.Namespace)
	sec, err := api.Get(ctx, mesh.PeersSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read Secret %s/%s in %s: %w", cl.Namespace, mesh.PeersSecretName, cl, err)
	}
	if sec.Annotations["meta.helm.sh/release-name"] != install.ReleaseName {
		return false, nil // not the release's: someone else's to delete
	}
	if len(mesh.ConfiguredPeers(sec)) > 0 { // connected meanwhile
		return false, fmt.Errorf("the mesh Secret %s/%s in %s records peers %v again (a connect ran during the uninstall): disconnect them, then run uninstall again",
			cl.Namespace, mesh.PeersSecretName, cl, mesh.ConfiguredPeers(sec))
	}
	err = api.Delete(ctx, mesh.PeersSecretName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &sec.ResourceVersion}})
	if err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("delete Secret %s/%s in %s: %w (run the same uninstall again to finish)", cl.Namespace, mesh.PeersSecretName, cl, err)
	}
	return true, nil
}

// deleteNamespace deletes the namespace when install created it.
func deleteNamespace(ctx context.Context, cl *mesh.Cluster) (bool, error) {
	ns, err := cl.Kube.CoreV1().Namespaces().Get(ctx, cl.Namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read namespace %s in %s: %w", cl.Namespace, cl, err)
	}
	if ns.Labels[install.NamespaceLabel] != install.NamespaceLabelValue || ns.DeletionTimestamp != nil {
		return false, nil
	}
	if err := cl.Kube.CoreV1().Namespaces().Delete(ctx, cl.Namespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("delete namespace %s in %s: %w (run the same uninstall again to finish)", cl.Namespace, cl, err)
	}
	return true, nil
}

func writeUninstall(w io.Writer, cl *mesh.Cluster, res install.UninstallResult, secretGone, nsGone bool) error {
	var lines []string
	if res.Release {
		lines = append(lines, fmt.Sprintf("uninstalled Helm release %s (revision %d) from %s, namespace %s: deleted %d objects (%s)",
			install.ReleaseName, res.Revision, cl, cl.Namespace, len(res.Deleted), strings.Join(res.Deleted, ", ")))
	}
	if secretGone {
		lines = append(lines, fmt.Sprintf("deleted Secret %s/%s (the release keeps it)", cl.Namespace, mesh.PeersSecretName))
	}
	for _, crd := range res.DeletedCRDs {
		lines = append(lines, "deleted CRD "+crd)
	}
	for _, why := range res.KeptCRDs {
		lines = append(lines, "kept "+why)
	}
	if nsGone {
		lines = append(lines, fmt.Sprintf("deleted namespace %s (install created it)", cl.Namespace))
	}
	if len(lines) == 0 {
		lines = append(lines, fmt.Sprintf("nothing to uninstall in %s, namespace %s (no release %s, nothing it leaves behind; another --namespace?)",
			cl, cl.Namespace, install.ReleaseName))
	}
	_, err := fmt.Fprintln(w, strings.Join(lines, "\n"))
	return err
}
