package interop

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/hive/hivetest"
	clientv3 "go.etcd.io/etcd/client/v3"

	ciliumkv "github.com/cilium/cilium/pkg/kvstore"

	"github.com/clustermesh/clustermesh/internal/pki"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/etcdserver"
)

// tlsEtcd is a real embedded etcd serving TLS with client-certificate
// authentication (a client certificate's common name is its etcd user).
// It starts with no user, no role and authentication disabled: whoever
// bootstraps it (Cilium's etcdinit, or our kvstore.BootstrapAuth) decides
// the users and roles.
type tlsEtcd struct {
	URL    string
	CA     *pki.CA
	CAFile string
	Dir    string
	Server *etcdserver.Server
}

// startTLSEtcd starts a fresh etcd in t.TempDir, stopped at cleanup.
func startTLSEtcd(t testing.TB) *tlsEtcd {
	t.Helper()
	e := &tlsEtcd{Dir: t.TempDir()}
	ca, err := pki.NewCA("interop etcd CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	e.CA = ca
	srv, err := ca.Issue(pki.LeafOptions{CommonName: "etcd", Server: true,
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := srv.WriteFiles(e.Dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	if e.CAFile, err = ca.WriteCertFile(e.Dir, "ca"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
	defer cancel()
	s, err := etcdserver.StartServer(ctx, etcdserver.ServerConfig{
		DataDir:                 filepath.Join(e.Dir, "data"),
		ListenClientURLs:        []string{"https://127.0.0.1:0"},
		CertFile:                certFile,
		KeyFile:                 keyFile,
		TrustedCAFile:           e.CAFile,
		AutoCompactionRetention: -1,
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(s.Close)
	e.Server = s
	e.URL = s.ClientURLs()[0]
	return e
}

// clientCert issues a client certificate for user (its common name) and
// returns the files holding it.
func (e *tlsEtcd) clientCert(t testing.TB, user string) (certFile, keyFile string) {
	t.Helper()
	leaf, err := e.CA.Issue(pki.LeafOptions{CommonName: user, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err = leaf.WriteFiles(t.TempDir(), "client")
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// ClientConfig returns our client configuration for user.
func (e *tlsEtcd) ClientConfig(t testing.TB, user string) kvstore.ClientConfig {
	t.Helper()
	cert, key := e.clientCert(t, user)
	return kvstore.ClientConfig{Endpoints: []string{e.URL}, TrustedCAFile: e.CAFile, CertFile: cert, KeyFile: key,
		DialTimeout: kvstore.Duration(2 * time.Second), RateLimitQPS: -1}
}

// CiliumConfigFile writes the etcd configuration file a Cilium component
// is given (kvstore-opt etcd.config) to log in as user, and returns its
// path.
func (e *tlsEtcd) CiliumConfigFile(t testing.TB, user string) string {
	t.Helper()
	cert, key := e.clientCert(t, user)
	path := filepath.Join(t.TempDir(), "etcd-config.yaml")
	cfg := fmt.Sprintf("endpoints:\n- %s\ntrusted-ca-file: %s\ncert-file: %s\nkey-file: %s\n", e.URL, e.CAFile, cert, key)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Connect returns our client logged in as user, closed at cleanup.
func (e *tlsEtcd) Connect(t testing.TB, user string) *kvstore.Client {
	t.Helper()
	c, err := kvstore.Connect(t.Context(), e.ClientConfig(t, user))
	if err != nil {
		t.Fatalf("connect to etcd as %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Etcd returns a plain etcd client logged in as user, closed at cleanup.
func (e *tlsEtcd) Etcd(t testing.TB, user string) *clientv3.Client {
	t.Helper()
	return e.Connect(t, user).Etcd()
}

// ciliumLogger logs Cilium's warnings and errors into the test log.
func ciliumLogger(t testing.TB) *slog.Logger {
	return hivetest.Logger(t, hivetest.LogLevel(slog.LevelWarn))
}

// connectCilium returns Cilium's own etcd client (pkg/kvstore, the one its
// agents and clustermesh-apiserver use) configured by the etcd config file
// at cfgFile, once it reports the connection established; closed at
// cleanup.
func connectCilium(t testing.TB, cfgFile string, opts ciliumkv.ExtraOptions) ciliumkv.BackendOperations {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	cli, errCh := ciliumkv.NewClient(ctx, ciliumLogger(t), ciliumkv.EtcdBackendName,
		map[string]string{ciliumkv.EtcdOptionConfig: cfgFile}, opts)
	stop := func() {
		if cli != nil {
			cli.Close()
		}
		cancel()
	}
	select {
	case err := <-errCh:
		if err != nil {
			stop()
			t.Fatalf("Cilium's etcd client (%s): %v", cfgFile, err)
		}
	case <-time.After(30 * time.Second):
		stop()
		t.Fatalf("Cilium's etcd client (%s) did not connect within 30s", cfgFile)
	}
	t.Cleanup(stop)
	return cli
}
