package kvstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// GetClusterConfig reads and validates the config a cluster publishes.
func GetClusterConfig(ctx context.Context, cli *Client, paths schema.Paths, cluster string) (schema.ClusterConfig, error) {
	key := paths.ClusterConfig(cluster)
	if err := cli.Limit(ctx); err != nil {
		return schema.ClusterConfig{}, err
	}
	resp, err := cli.Etcd().Get(ctx, key)
	if err != nil {
		return schema.ClusterConfig{}, fmt.Errorf("read cluster config %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return schema.ClusterConfig{}, fmt.Errorf("%w: %s is missing: is the clustermesh-apiserver of cluster %q running, and is %q its cluster name?",
			ErrClusterConfig, key, cluster, cluster)
	}
	cfg, err := paths.DecodeClusterConfig(key, resp.Kvs[0].Value)
	if err != nil {
		return schema.ClusterConfig{}, fmt.Errorf("%w: %w", ErrClusterConfig, err)
	}
	return cfg, nil
}

// RunClusterConfig writes the cluster's config and keeps it there: whenever
// the key is deleted or changed by someone else it is written again. It
// returns when ctx ends. written, if not nil, is called after each write.
func RunClusterConfig(ctx context.Context, cli *Client, paths schema.Paths, cluster string, cfg schema.ClusterConfig,
	log *slog.Logger, written func(),
) error {
	key := paths.ClusterConfig(cluster)
	value, err := cfg.Marshal()
	if err != nil {
		return fmt.Errorf("encode cluster config: %w", err)
	}
	if _, err := paths.DecodeClusterConfig(key, value); err != nil {
		return fmt.Errorf("%w: refusing to publish an invalid config: %w", ErrClusterConfig, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bo := backoff.Backoff{}
	for ctx.Err() == nil {
		err := enforceClusterConfig(ctx, cli, key, value, log, written)
		if ctx.Err() != nil {
			break
		}
		log.Warn("keeping cluster config in etcd", "key", key, "error", err)
		_ = bo.Wait(ctx)
	}
	return ctx.Err()
}

func enforceClusterConfig(ctx context.Context, cli *Client, key string, value []byte, log *slog.Logger, written func()) error {
	put := func() (int64, error) {
		if err := cli.Limit(ctx); err != nil {
			return 0, err
		}
		resp, err := cli.Etcd().Put(ctx, key, string(value))
		if err != nil {
			return 0, fmt.Errorf("write cluster config %s: %w", key, err)
		}
		if written != nil {
			written()
		}
		return resp.Header.Revision, nil
	}
	resp, err := cli.Etcd().Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read cluster config %s: %w", key, err)
	}
	rev := resp.Header.Revision
	if len(resp.Kvs) == 0 || !bytes.Equal(resp.Kvs[0].Value, value) {
		if rev, err = put(); err != nil {
			return err
		}
	} else if written != nil {
		written()
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Etcd().Watch(wctx, key, clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch cluster config %s: %w", key, err)
		}
		changed := false
		for _, ev := range wr.Events {
			changed = ev.Type == clientv3.EventTypeDelete || !bytes.Equal(ev.Kv.Value, value)
		}
		if changed {
			log.Warn("cluster config was deleted or changed in etcd, writing it again", "key", key)
			if _, err := put(); err != nil {
				return err
			}
		}
	}
	return errors.New("watch cluster config: channel closed")
}
