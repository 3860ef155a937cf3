//go:build linux

package bed

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/cli/mesh"
)

// KernelIPCache opens the ipcache map the node's agent pinned: what the
// datapath of the node sees. Close it when done.
func (n *Node) KernelIPCache() (*bpf.PinnedIPCache, error) {
	return bpf.OpenPinnedIPCache(filepath.Join(n.dir, "bpffs", "clustermesh"))
}

// EtcdClient returns an admin client of the cluster's clustermesh etcd
// (the certificates install created); close it when done.
func (c *Cluster) EtcdClient() (*clientv3.Client, error) {
	file := func(secret, key string) string { return filepath.Join(c.dir, secret+"-"+key) }
	cert, err := tls.LoadX509KeyPair(file(mesh.AdminSecretName, mesh.TLSCertKey), file(mesh.AdminSecretName, mesh.TLSKeyKey))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: admin certificate: %w", c.Name, err)
	}
	ca, err := os.ReadFile(file(mesh.ServerSecretName, mesh.CACertKey))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.EtcdURL()}, DialTimeout: 5 * time.Second,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: etcd client: %w", c.Name, err)
	}
	return cli, nil
}
