package kvstore

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

type listResult struct {
	rev       int64
	clusterID uint64
}

// listRange reads [key, end) at one revision (rev 0: the latest) in pages of
// pageSize keys, each request bounded by timeout, and calls fn for each key in order. It returns the revision
// the whole range was read at, so that a watch can start right after it.
func listRange(ctx context.Context, cli *Client, key, end string, rev, pageSize int64, timeout time.Duration, keysOnly bool,
	fn func(k, v []byte, modRev int64),
) (listResult, error) {
	var res listResult
	from := key
	for {
		opts := []clientv3.OpOption{
			clientv3.WithRange(end),
			clientv3.WithLimit(pageSize),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend),
		}
		if res.rev != 0 {
			opts = append(opts, clientv3.WithRev(res.rev))
		} else if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		if err := cli.Limit(ctx); err != nil {
			return res, err
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := cli.Etcd().Get(pctx, from, opts...)
		cancel()
		if err != nil {
			return res, fmt.Errorf("list %s: %w", key, err)
		}
		if res.rev == 0 {
			res.rev = resp.Header.Revision
			res.clusterID = resp.Header.ClusterId
		}
		for _, kv := range resp.Kvs {
			fn(kv.Key, kv.Value, kv.ModRevision)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return res, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
