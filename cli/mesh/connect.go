package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/internal/pki"
	"github.com/clustermesh/clustermesh/kvstore"
)

// Pair is two clusters connected both ways.
type Pair struct{ A, B *Settings }

// Result says what a connect or disconnect changed, one line per change.
type Result struct {
	Changes []string
}

// minCertValidity: a peer certificate expiring sooner is re-issued by
// connect.
const minCertValidity = 30 * 24 * time.Hour

// peerCertValidity of the client certificates connect issues.
const peerCertValidity = 3 * 365 * 24 * time.Hour

// undoTimeout bounds the rollback, which runs even when ctx was canceled.
const undoTimeout = 30 * time.Second

// link is one direction: the agents of to read the etcd of from.
type link struct{ from, to *Settings }

func links(pairs []Pair) []link {
	var out []link
	for _, p := range pairs {
		out = append(out, link{from: p.A, to: p.B}, link{from: p.B, to: p.A})
	}
	return out
}

// clustersOf returns the distinct clusters of the pairs, in order.
func clustersOf(pairs []Pair) []*Settings {
	var out []*Settings
	for _, p := range pairs {
		for _, s := range []*Settings{p.A, p.B} {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// run is one connect or disconnect: the admin clients and what to undo.
type run struct {
	admins map[*Settings]*kvstore.Client
	undo   []func(context.Context) error
	res    Result
}

func newRun(ctx context.Context, clusters []*Settings) (*run, error) {
	r := &run{admins: map[*Settings]*kvstore.Client{}}
	for _, s := range clusters {
		cli, err := s.ConnectAdmin(ctx)
		if err != nil {
			r.close()
			return nil, err
		}
		r.admins[s] = cli
	}
	return r, nil
}

func (r *run) close() {
	for _, c := range r.admins {
		_ = c.Close()
	}
}

func (r *run) change(s *Settings, format string, a ...any) {
	r.res.Changes = append(r.res.Changes, fmt.Sprintf("cluster %s (%s): %s", s.Name, s.Cluster, fmt.Sprintf(format, a...)))
}

// rollback undoes the run's writes, newest first, and returns err with
// what the rollback could not undo.
func (r *run) rollback(ctx context.Context, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	var failed []error
	for _, u := range slices.Backward(r.undo) {
		if uerr := u(ctx); uerr != nil {
			failed = append(failed, uerr)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w; rolling back failed too (%w): run the same command again to finish, or `clustermesh disconnect` to undo",
			err, errors.Join(failed...))
	}
	if len(r.undo) > 0 {
		return fmt.Errorf("%w (the changes made before the failure were rolled back: nothing is half-paired)", err)
	}
	return err
}

// Connect connects every pair both ways. Everything is checked before the
// first write; a failed write rolls back the run's earlier writes. When the
// pairs are already connected nothing is written and Result is empty.
func Connect(ctx context.Context, pairs []Pair) (Result, error) {
	clusters := clustersOf(pairs)
	if err := Validate(clusters); err != nil {
		return Result{}, err
	}
	r, err := newRun(ctx, clusters)
	if err != nil {
		return Result{}, err
	}
	defer r.close()

	// Plan: the peers Secrets' desired content, and the users to create.
	secrets := map[*Settings]*corev1.Secret{}
	desired := map[*Settings]map[string][]byte{}
	for _, s := range clusters {
		sec, err := s.PeersSecret(ctx)
		if err != nil {
			return Result{}, err
		}
		secrets[s] = sec
		desired[s] = maps.Clone(sec.Data)
		if desired[s] == nil {
			desired[s] = map[string][]byte{}
		}
	}
	for _, l := range links(pairs) {
		entries, err := peerEntries(l, secrets[l.to].Data)
		if err != nil {
			return Result{}, err
		}
		maps.Copy(desired[l.to], entries)
	}

	// Apply: users first (invisible until a Secret names them), then the
	// Secrets, which make the agents connect.
	for _, l := range links(pairs) {
		if err := r.ensureUser(ctx, l.from, l.to.Name); err != nil {
			return Result{}, r.rollback(ctx, err)
		}
	}
	for _, s := range clusters {
		if err := r.writeSecret(ctx, s, secrets[s], desired[s]); err != nil {
			return Result{}, r.rollback(ctx, err)
		}
	}
	return r.res, nil
}

// peerEntries returns the mesh Secret entries of the cluster l.to for its
// peer l.from: reusing the certificate already there when it is still good.
func peerEntries(l link, current map[string][]byte) (map[string][]byte, error) {
	keys := PeerKeys(l.from.Name)
	user := PeerUser(l.to.Name)
	certPEM, keyPEM := current[keys[2]], current[keys[3]]
	leaf, err := ParseLeaf(certPEM, keyPEM)
	if err == nil {
		err = VerifyLeaf(leaf, l.from.CA, user, minCertValidity)
	}
	if err != nil { // absent, foreign, expiring: issue a new one
		leaf, err = l.from.CA.Issue(pki.LeafOptions{CommonName: user, Client: true, Validity: peerCertValidity})
		if err != nil {
			return nil, fmt.Errorf("issue the client certificate of %s for cluster %s: %w", user, l.from.Name, err)
		}
		if keyPEM, err = leaf.KeyPEM(); err != nil {
			return nil, err
		}
		certPEM = leaf.CertPEM()
	}
	// The trust anchors come from the peer's own settings (its ConfigMap),
	// read here by the operator, not from what its etcd will announce: the
	// agents of l.to refuse l.from when it announces another cluster ID,
	// and check its nodes' pod CIDRs against these.
	cidrs := make([]string, 0, len(l.from.PodCIDRs))
	for _, p := range l.from.PodCIDRs {
		cidrs = append(cidrs, p.Masked().String())
	}
	cfg := kvstore.ClientConfig{
		Endpoints:     l.from.Endpoints,
		TrustedCAFile: filepath.Join(l.to.MeshConfigDir, keys[1]),
		CertFile:      filepath.Join(l.to.MeshConfigDir, keys[2]),
		KeyFile:       filepath.Join(l.to.MeshConfigDir, keys[3]),
		ClusterID:     l.from.ID,
		PodCIDRs:      cidrs,
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode the etcd config of peer %s: %w", l.from.Name, err)
	}
	return map[string][]byte{keys[0]: b, keys[1]: l.from.CAPEM, keys[2]: certPEM, keys[3]: keyPEM}, nil
}

// ensureUser creates the read-only user in the etcd of s unless it exists
// with the remote role; a user this run created is deleted on rollback.
func (r *run) ensureUser(ctx context.Context, s *Settings, peer string) error {
	cli := r.admins[s].Etcd()
	user := PeerUser(peer)
	resp, err := cli.UserGet(ctx, user)
	switch {
	case err == nil && slices.Contains(resp.Roles, kvstore.RemoteRole):
		return nil
	case err != nil && !errors.Is(err, rpctypes.ErrUserNotFound):
		return fmt.Errorf("cluster %s (%s): read etcd user %s: %w", s.Name, s.Cluster, user, err)
	}
	existed := err == nil
	if err := kvstore.AddPeerUser(ctx, cli, peer); err != nil {
		if errors.Is(err, rpctypes.ErrRoleNotFound) {
			return fmt.Errorf("cluster %s (%s): %w: the clustermesh-apiserver creates the %q role when it starts; check it is running and ready (clustermesh status --context %s), then run connect again",
				s.Name, s.Cluster, err, kvstore.RemoteRole, s.Cluster)
		}
		return fmt.Errorf("cluster %s (%s): %w", s.Name, s.Cluster, err)
	}
	if existed {
		r.change(s, "granted role %s to etcd user %s", kvstore.RemoteRole, user)
	} else {
		r.change(s, "created etcd user %s (read-only)", user)
	}
	if !existed {
		r.undo = append(r.undo, func(ctx context.Context) error {
			if _, err := cli.UserDelete(ctx, user); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
				return fmt.Errorf("cluster %s: delete etcd user %s: %w", s.Name, user, err)
			}
			return nil
		})
	}
	return nil
}

// writeSecret updates the mesh Secret of s to data unless it already holds
// it; the previous content is restored on rollback.
func (r *run) writeSecret(ctx context.Context, s *Settings, sec *corev1.Secret, data map[string][]byte) error {
	if maps.EqualFunc(sec.Data, data, bytes.Equal) {
		return nil
	}
	before := sec.Data
	upd := sec.DeepCopy()
	upd.Data = data
	api := s.Cluster.Kube.CoreV1().Secrets(s.Cluster.Namespace)
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("cluster %s (%s): update Secret %s/%s: %w", s.Name, s.Cluster, s.Cluster.Namespace, PeersSecretName, err)
	}
	for _, p := range diffPeers(before, data) {
		r.change(s, "%s peer %s in Secret %s/%s", p.verb, p.name, s.Cluster.Namespace, PeersSecretName)
	}
	r.undo = append(r.undo, func(ctx context.Context) error {
		cur, err := api.Get(ctx, PeersSecretName, metav1.GetOptions{})
		if err == nil {
			cur.Data = before
			_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("cluster %s: restore Secret %s/%s: %w", s.Name, s.Cluster.Namespace, PeersSecretName, err)
		}
		return nil
	})
	return nil
}

type peerChange struct{ verb, name string }

// diffPeers names the peers whose entries differ between two Secret
// contents.
func diffPeers(before, after map[string][]byte) []peerChange {
	seen := map[string]bool{}
	var out []peerChange
	for _, data := range []map[string][]byte{after, before} {
		for _, name := range ConfiguredPeers(&corev1.Secret{Data: data}) {
			if seen[name] {
				continue
			}
			seen[name] = true
			_, inBefore := before[name]
			_, inAfter := after[name]
			changed := false
			for _, k := range PeerKeys(name) {
				changed = changed || !bytes.Equal(before[k], after[k])
			}
			switch {
			case !inBefore:
				out = append(out, peerChange{"added", name})
			case !inAfter:
				out = append(out, peerChange{"removed", name})
			case changed:
				out = append(out, peerChange{"updated", name})
			}
		}
	}
	slices.SortFunc(out, func(a, b peerChange) int { return strings.Compare(a.name, b.name) })
	return out
}
