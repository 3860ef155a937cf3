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
	fetch := func(from string, rev int64) (*clientv3.GetResponse, error) {
		opts := []clientv3.OpOption{
			clientv3.WithRange(end),
			clientv3.WithLimit(pageSize),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend),
		}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		if err := cli.Limit(ctx); err != nil {
			return nil, err
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := cli.Etcd().Get(pctx, from, opts...)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", key, err)
		}
		return resp, nil
	}
	type page struct {
		resp *clientv3.GetResponse
		err  error
	}
	resp, err := fetch(key, rev)
	if err != nil {
		return res, err
	}
	res.rev, res.clusterID = resp.Header.Revision, resp.Header.ClusterId
	for {
		// Fetch the next page (at the first page's revision) while this
		// one is handled: the server's work and ours overlap.
		var next chan page
		if resp.More && len(resp.Kvs) > 0 {
			from := string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
			next = make(chan page, 1)
			go func() {
				r, err := fetch(from, res.rev)
				next <- page{r, err}
			}()
		}
		for _, kv := range resp.Kvs {
			fn(kv.Key, kv.Value, kv.ModRevision)
		}
		if next == nil {
			return res, nil
		}
		p := <-next
		if p.err != nil {
			return res, p.err
		}
		resp = p.resp
	}
}
