package server_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/clustermesh-apiserver/server"
	"github.com/clustermesh/clustermesh/internal/pki"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// bed is one cluster: a real kube-apiserver and a clustermesh-apiserver
// with its embedded etcd serving mTLS.
type bed struct {
	kube  *k8stest.Cluster
	cfg   server.Config
	ca    *pki.CA
	dir   string
	paths schema.Paths
	srv   *server.Server
	stop  context.CancelFunc
	done  chan error
	admin *kvstore.Client
}

func newBed(t testing.TB, mod func(*server.Config)) *bed {
	t.Helper()
	b := newStoppedBed(t, mod)
	b.start(t)
	b.admin = b.client(t, kvstore.AdminUser)
	return b
}

// newStoppedBed prepares a cluster whose clustermesh-apiserver is not
// started yet.
func newStoppedBed(t testing.TB, mod func(*server.Config)) *bed {
	t.Helper()
	return newStoppedBedOn(t, k8stest.Start(t), mod)
}

// newStoppedBedOn prepares another clustermesh-apiserver (a replica, with
// its own etcd) for an existing kube-apiserver.
func newStoppedBedOn(t testing.TB, kube *k8stest.Cluster, mod func(*server.Config)) *bed {
	t.Helper()
	b := &bed{kube: kube, dir: t.TempDir(), paths: schema.DefaultPaths()}
	ca, err := pki.NewCA("cluster1 CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	b.ca = ca
	srv, err := ca.Issue(pki.LeafOptions{CommonName: "clustermesh-apiserver", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	adm, err := ca.Issue(pki.LeafOptions{CommonName: kvstore.AdminUser, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	b.cfg = server.Config{
		ClusterName: "cluster1", ClusterID: 1, RestConfig: b.kube.Config,
		EtcdDataDir:            filepath.Join(b.dir, "etcd"),
		EtcdListenClientURLs:   []string{"https://127.0.0.1:" + strconv.Itoa(kvtest.FreePort(t))},
		IdentityGCGrace:        time.Hour,
		DefaultGlobalNamespace: true,
	}
	b.cfg.TLSCertFile, b.cfg.TLSKeyFile, _ = srv.WriteFiles(b.dir, "server")
	b.cfg.AdminCertFile, b.cfg.AdminKeyFile, _ = adm.WriteFiles(b.dir, "admin")
	b.cfg.TLSCAFile, _ = ca.WriteCertFile(b.dir, "ca")
	if mod != nil {
		mod(&b.cfg)
	}
	return b
}

// start runs the clustermesh-apiserver until stopApiserver or cleanup.
func (b *bed) start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: benchLogLevel}))
	s, err := server.New(ctx, b.cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("start clustermesh-apiserver: %v", err)
	}
	b.srv, b.stop, b.done = s, cancel, make(chan error, 1)
	go func() {
		err := s.Run(ctx)
		s.Close() // release the etcd port before a restart
		b.done <- err
	}()
	t.Cleanup(b.stopApiserver)
}

func (b *bed) stopApiserver() {
	if b.stop == nil {
		return
	}
	b.stop()
	<-b.done
	b.stop = nil
}

// client logs in to the cluster's etcd as user.
func (b *bed) client(t testing.TB, user string) *kvstore.Client {
	t.Helper()
	leaf, err := b.ca.Issue(pki.LeafOptions{CommonName: user, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := kvstore.ClientConfig{Endpoints: b.cfg.EtcdListenClientURLs, TrustedCAFile: b.cfg.TLSCAFile, RateLimitQPS: -1}
	cfg.CertFile, cfg.KeyFile, err = leaf.WriteFiles(t.TempDir(), user)
	if err != nil {
		t.Fatal(err)
	}
	var c *kvstore.Client
	eventually(t, "etcd reachable as "+user, func() bool {
		c, err = kvstore.Connect(t.Context(), cfg)
		return err == nil
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// get returns the value at key ("" if absent).
func (b *bed) get(t testing.TB, key string) string {
	t.Helper()
	resp, err := b.admin.Etcd().Get(t.Context(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// list returns every key/value under prefix.
func (b *bed) list(t testing.TB, prefix string) map[string]string {
	t.Helper()
	resp, err := b.admin.Etcd().Get(t.Context(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("list %s: %v", prefix, err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// waitValue waits until key holds want, and reports the difference if it
// never does.
func (b *bed) waitValue(t testing.TB, key, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := b.get(t, key)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s\n got %s\nwant %s", key, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bed) waitSynced(t testing.TB) {
	t.Helper()
	for _, p := range []string{b.paths.NodesPrefix(), b.paths.IdentitiesPrefix(), b.paths.IPPrefix(), b.paths.ServicesPrefix()} {
		key := b.paths.Synced("cluster1", p)
		eventually(t, "synced marker "+key, func() bool { return b.get(t, key) != "" })
	}
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 30*time.Second, what, cond)
}

func waitWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, d, what, cond)
}

// Kubernetes objects, created the way kubelet and controllers would.

func (b *bed) createNode(t testing.TB, name, ip, cidr string) {
	t.Helper()
	b.kube.CreateNode(t, name, ip, cidr)
}

func (b *bed) createPod(t testing.TB, ns, name string, labels map[string]string, ip, hostIP string) *corev1.Pod {
	t.Helper()
	return b.kube.CreatePod(t, ns, name, labels, podSpec(), ip, hostIP)
}

func (b *bed) createService(t testing.TB, ns, name string, ann map[string]string, ports []corev1.ServicePort) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann, Labels: map[string]string{"app": name}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: ports},
	}
	s, err := b.kube.Client.CoreV1().Services(ns).Create(t.Context(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (b *bed) createSlice(t testing.TB, ns, svc string, ready map[string]bool, port int32) {
	t.Helper()
	var eps []k8stest.Endpoint
	for ip, r := range ready {
		eps = append(eps, k8stest.Endpoint{IP: ip, Ready: r})
	}
	b.kube.SetEndpointSlice(t, ns, svc, port, eps...)
}

func podSpec() corev1.PodSpec {
	return corev1.PodSpec{ServiceAccountName: "pilot", NodeName: "n1", Containers: []corev1.Container{{
		Name: "app", Image: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 9090}},
	}}}
}

// benchLogLevel is raised to info by CLUSTERMESH_TEST_LOG=info.
var benchLogLevel = func() slog.Level {
	if os.Getenv("CLUSTERMESH_TEST_LOG") == "info" {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}()
