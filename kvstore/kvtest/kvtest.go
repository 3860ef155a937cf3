// Package kvtest starts real embedded etcd servers for tests: with TLS,
// client-certificate authentication and the project's users and roles, or
// plain for benchmarks. Every server lives in t.TempDir and stops in
// t.Cleanup.
package kvtest

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/internal/pki"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/etcdserver"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Env is one running etcd of a cluster.
type Env struct {
	Cluster string
	Paths   schema.Paths
	CA      *pki.CA
	Dir     string
	cfg     etcdserver.ServerConfig
	Server  *etcdserver.Server
	URL     string
}

// Options for Start.
type Options struct {
	// Cluster name (default "cluster1").
	Cluster string
	// Plain serves http without authentication.
	Plain bool
	// AutoCompaction in revisions (default: off, tests compact by hand).
	AutoCompaction int64
	// DataDir is the parent of the data directory (default t.TempDir()).
	DataDir string
}

// Start starts an etcd for tests. With TLS (the default) it bootstraps the
// admin, root and remote users, and enables authentication.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.Cluster == "" {
		opts.Cluster = "cluster1"
	}
	e := &Env{Cluster: opts.Cluster, Paths: schema.DefaultPaths(), Dir: t.TempDir()}
	if opts.DataDir != "" {
		dir, err := os.MkdirTemp(opts.DataDir, "etcd-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		e.Dir = dir
	}
	port := FreePort(t)
	scheme := "https"
	if opts.Plain {
		scheme = "http"
	}
	e.URL = scheme + "://127.0.0.1:" + strconv.Itoa(port)
	e.cfg = etcdserver.ServerConfig{
		DataDir:                 filepath.Join(e.Dir, "data"),
		ListenClientURLs:        []string{e.URL},
		AutoCompactionRetention: -1,
	}
	if opts.AutoCompaction > 0 {
		e.cfg.AutoCompactionRetention = opts.AutoCompaction
	}
	if !opts.Plain {
		ca, err := pki.NewCA(opts.Cluster+" CA", 0)
		if err != nil {
			t.Fatal(err)
		}
		e.CA = ca
		srv, err := ca.Issue(pki.LeafOptions{CommonName: "etcd", Server: true, Client: true,
			IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}})
		if err != nil {
			t.Fatal(err)
		}
		e.cfg.CertFile, e.cfg.KeyFile, err = srv.WriteFiles(e.Dir, "server")
		if err != nil {
			t.Fatal(err)
		}
		if e.cfg.TrustedCAFile, err = ca.WriteCertFile(e.Dir, "ca"); err != nil {
			t.Fatal(err)
		}
	}
	e.start(t)
	t.Cleanup(func() { e.Server.Close() })
	if !opts.Plain {
		admin := e.Connect(t, kvstore.AdminUser)
		if err := kvstore.BootstrapAuth(t.Context(), admin.Etcd(), e.Paths, e.Cluster); err != nil {
			t.Fatalf("bootstrap etcd auth: %v", err)
		}
	}
	return e
}

func (e *Env) start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
	defer cancel()
	s, err := etcdserver.StartServer(ctx, e.cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	e.Server = s
}

// Stop stops the server, keeping its data.
func (e *Env) Stop() { e.Server.Close() }

// Restart starts the server again on the same data dir and port.
func (e *Env) Restart(t testing.TB) {
	t.Helper()
	e.start(t)
}

// ClientConfig returns a client config for user: with TLS, a fresh client
// certificate whose common name is user; plain servers ignore user.
func (e *Env) ClientConfig(t testing.TB, user string) kvstore.ClientConfig {
	t.Helper()
	cfg := kvstore.ClientConfig{Endpoints: []string{e.URL}, DialTimeout: kvstore.Duration(2 * time.Second), RateLimitQPS: -1}
	if e.CA == nil {
		return cfg
	}
	leaf, err := e.CA.Issue(pki.LeafOptions{CommonName: user, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if cfg.CertFile, cfg.KeyFile, err = leaf.WriteFiles(dir, user); err != nil {
		t.Fatal(err)
	}
	cfg.TrustedCAFile = e.cfg.TrustedCAFile
	return cfg
}

// Connect returns a client logged in as user, closed at cleanup.
func (e *Env) Connect(t testing.TB, user string) *kvstore.Client {
	t.Helper()
	return ConnectConfig(t, e.ClientConfig(t, user))
}

// ConnectConfig connects with cfg, closed at cleanup.
func ConnectConfig(t testing.TB, cfg kvstore.ClientConfig) *kvstore.Client {
	t.Helper()
	c, err := kvstore.Connect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("connect to etcd %v: %v", cfg.Endpoints, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
//
// The port is below the kernel's ephemeral range (32768 and up by
// default), in 10000..19999 (e2e/bed takes 20000..31999): a port the kernel
// handed out for ":0" and closed again can be taken by an outgoing
// connection of any test running meanwhile (the etcd clients of parallel
// packages), before the server binds it ("address already in use"). Ports
// handed out by this process are not handed out twice.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		port := 10000 + rand.IntN(10000)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		_ = l.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatal("no free port of 127.0.0.1 between 10000 and 19999 after 200 tries")
	return 0
}

var (
	portsMu    sync.Mutex // guards portsGiven
	portsGiven = map[int]bool{}
)

// Member is one member of a multi-member etcd cluster started by
// StartCluster.
type Member struct {
	URL    string
	cfg    etcdserver.ServerConfig
	Server *etcdserver.Server
}

// Stop stops the member, keeping its data.
func (m *Member) Stop() { m.Server.Close() }

// StartCluster starts an n-member plain etcd cluster and returns its members
// (all stopped at cleanup).
func StartCluster(t testing.TB, n int) []*Member {
	t.Helper()
	members := make([]*Member, n)
	var initial []string
	for i := range members {
		name := "m" + strconv.Itoa(i)
		peer := "http://127.0.0.1:" + strconv.Itoa(FreePort(t))
		url := "http://127.0.0.1:" + strconv.Itoa(FreePort(t))
		members[i] = &Member{URL: url, cfg: etcdserver.ServerConfig{
			Name: name, DataDir: filepath.Join(t.TempDir(), name), ListenClientURLs: []string{url},
			ListenPeerURL: peer, AutoCompactionRetention: -1,
		}}
		initial = append(initial, name+"="+peer)
	}
	errs := make(chan error, n)
	for _, m := range members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
		go func() { // each member waits for a quorum: start them together
			s, err := etcdserver.StartServer(context.WithoutCancel(t.Context()), m.cfg)
			m.Server = s
			errs <- err
		}()
	}
	for range members {
		if err := <-errs; err != nil {
			t.Fatalf("start etcd cluster member: %v", err)
		}
	}
	t.Cleanup(func() {
		for _, m := range members {
			if m.Server != nil {
				m.Server.Close()
			}
		}
	})
	return members
}
