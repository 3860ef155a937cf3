package kvstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Users and roles of a cluster's etcd.
const (
	// RootUser holds etcd's root role, which etcd requires before auth can
	// be enabled.
	RootUser = "root"
	// AdminUser is the clustermesh-apiserver's user (root role).
	AdminUser = "admin"
	// RemoteRole may read what remote agents need and nothing else.
	RemoteRole = "remote"
	// RemoteUser is the shared read-only user of remote agents.
	RemoteUser = "remote"
	// PeerUserPrefix prefixes per-peer read-only users: remote-<cluster>.
	PeerUserPrefix = "remote-"
	// LocalRole may read the cache of remote state (and the cluster
	// configs and synced markers that go with it): the local agents' role
	// when the clustermesh-apiserver caches the peers for them.
	LocalRole = "local"
	// LocalUser is the local agents' read-only user (Cilium's "local").
	LocalUser = "local"
)

// LocalReadRanges returns the key ranges the local role may read, the same
// as Cilium's etcdinit grants its local role (the users of a KVStoreMesh
// cache): the heartbeat as a prefix, the cache, every cluster config and
// every synced marker.
func LocalReadRanges(p schema.Paths) [][2]string {
	hb := p.Heartbeat()
	out := [][2]string{{hb, clientv3.GetPrefixRangeEnd(hb)}}
	for _, pre := range []string{p.CacheRoot(), p.ClusterConfigPrefix(), p.SyncedRoot()} {
		out = append(out, [2]string{pre, clientv3.GetPrefixRangeEnd(pre)})
	}
	return out
}

// PeerUser returns the read-only etcd user of the given peer cluster.
func PeerUser(peer string) string { return PeerUserPrefix + peer }

// RemoteReadRanges returns the key ranges the remote role may read, the
// same as Cilium's etcdinit grants its remote role: the state prefix, its
// own cluster config, its own synced markers and the heartbeat as a prefix
// (without a trailing slash). Cilium's etcd client lists the heartbeat with
// a range read and reports itself connected only after that list, so a
// grant of the single key would keep Cilium agents out. Each entry is
// [key, rangeEnd); an empty rangeEnd is one key.
func RemoteReadRanges(p schema.Paths, cluster string) [][2]string {
	state := p.StatePrefix()
	synced := p.SyncedPrefix(cluster)
	hb := p.Heartbeat()
	return [][2]string{
		{hb, clientv3.GetPrefixRangeEnd(hb)},
		{state, clientv3.GetPrefixRangeEnd(state)},
		{p.ClusterConfig(cluster), ""},
		{synced, clientv3.GetPrefixRangeEnd(synced)},
	}
}

// BootstrapAuth creates the root and admin users, the read-only remote role
// and user, the read-only local role and user (the local agents reading the
// cache of remote state), and enables authentication. It is idempotent; once auth is on it
// must be called by a root-role user (the admin certificate).
func BootstrapAuth(ctx context.Context, cli *clientv3.Client, p schema.Paths, cluster string) error {
	if err := ensureRole(ctx, cli, "root"); err != nil {
		return err
	}
	for _, u := range []string{RootUser, AdminUser} {
		if err := ensureUser(ctx, cli, u, "root"); err != nil {
			return err
		}
	}
	if err := ensureRole(ctx, cli, RemoteRole); err != nil {
		return err
	}
	for _, r := range RemoteReadRanges(p, cluster) {
		if _, err := cli.RoleGrantPermission(ctx, RemoteRole, r[0], r[1], clientv3.PermissionType(clientv3.PermRead)); err != nil {
			return fmt.Errorf("grant %s read on %q: %w", RemoteRole, r[0], err)
		}
	}
	if err := ensureUser(ctx, cli, RemoteUser, RemoteRole); err != nil {
		return err
	}
	if err := ensureRole(ctx, cli, LocalRole); err != nil {
		return err
	}
	for _, r := range LocalReadRanges(p) {
		if _, err := cli.RoleGrantPermission(ctx, LocalRole, r[0], r[1], clientv3.PermissionType(clientv3.PermRead)); err != nil {
			return fmt.Errorf("grant %s read on %q: %w", LocalRole, r[0], err)
		}
	}
	if err := ensureUser(ctx, cli, LocalUser, LocalRole); err != nil {
		return err
	}
	st, err := cli.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("etcd auth status: %w", err)
	}
	if !st.Enabled {
		if _, err := cli.AuthEnable(ctx); err != nil {
			return fmt.Errorf("enable etcd auth: %w", err)
		}
	}
	return nil
}

// AddPeerUser creates (idempotently) the read-only user of a peer cluster.
func AddPeerUser(ctx context.Context, cli *clientv3.Client, peer string) error {
	return ensureUser(ctx, cli, PeerUser(peer), RemoteRole)
}

// RemovePeerUser deletes the read-only user of a peer cluster; a missing
// user is not an error.
func RemovePeerUser(ctx context.Context, cli *clientv3.Client, peer string) error {
	if _, err := cli.UserDelete(ctx, PeerUser(peer)); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
		return fmt.Errorf("delete etcd user %s: %w", PeerUser(peer), err)
	}
	return nil
}

func ensureRole(ctx context.Context, cli *clientv3.Client, role string) error {
	if _, err := cli.RoleAdd(ctx, role); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("add etcd role %s: %w", role, err)
	}
	return nil
}

// ensureUser adds a certificate-only user (no password: the client
// certificate's common name logs it in) and grants it a role.
func ensureUser(ctx context.Context, cli *clientv3.Client, user, role string) error {
	if strings.ContainsAny(user, " /") || user == "" {
		return fmt.Errorf("%w: etcd user name %q", ErrInvalidConfig, user)
	}
	_, err := cli.UserAddWithOptions(ctx, user, "", &clientv3.UserAddOptions{NoPassword: true})
	if err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("add etcd user %s: %w", user, err)
	}
	if _, err := cli.UserGrantRole(ctx, user, role); err != nil {
		return fmt.Errorf("grant role %s to etcd user %s: %w", role, user, err)
	}
	return nil
}
