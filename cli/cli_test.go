package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/agent/server"
	"github.com/clustermesh/clustermesh/cli"
	"github.com/clustermesh/clustermesh/cli/internal/testbed"
	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/cli/status"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
	"github.com/clustermesh/clustermesh/internal/version"
	"github.com/clustermesh/clustermesh/kvstore"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// run runs the clustermesh command with args and returns its stdout and
// stderr.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := cli.New()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, args...)
	if err != nil {
		t.Fatalf("clustermesh %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// users returns the per-peer etcd users of a cluster's etcd.
func users(t *testing.T, c *testbed.Cluster) []string {
	t.Helper()
	admin := c.Etcd.Env.Connect(t, kvstore.AdminUser)
	resp, err := admin.Etcd().UserList(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, u := range resp.Users {
		if strings.HasPrefix(u, kvstore.PeerUserPrefix) {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func setConfig(t *testing.T, c *testbed.Cluster, key, value string) {
	t.Helper()
	api := c.Kube.Client.CoreV1().ConfigMaps(testbed.Namespace)
	cm, err := api.Get(t.Context(), mesh.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[key] = value
	if _, err := api.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestCLI drives the CLI against two clusters, each a real kube-apiserver
// and a real etcd, as a user would: refused conflicts, connect, connect
// again, a connect that fails halfway, status from real agents, disconnect.
// The steps share the clusters (each takes seconds to start) and run in
// order.
func TestCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts two kube-apiservers and two etcds")
	}
	bed := testbed.Start(t,
		testbed.Spec{Name: "cluster1", ID: 1, PodCIDR: "10.1.0.0/16"},
		testbed.Spec{Name: "cluster2", ID: 2, PodCIDR: "10.2.0.0/16"},
		testbed.Spec{Name: "cluster3", ID: 3, PodCIDR: "10.3.0.0/16"},
	)
	c1, c2, c3 := bed.Clusters[0], bed.Clusters[1], bed.Clusters[2]
	kc := "--kubeconfig=" + bed.Kubeconfig
	connectArgs := []string{"connect", kc, "--context", c1.Context, "--destination-context", c2.Context}
	connected := false // the steps after "connect" need it
	needConnected := func(t *testing.T) {
		if !connected {
			t.Skip("runs after the connect step: run the whole TestCLI")
		}
	}

	t.Run("conflicts are refused naming both values and the fix", func(t *testing.T) {
		for _, tc := range []struct {
			key, value string
			want       []string
		}{
			{mesh.KeyClusterName, "cluster1", []string{"same cluster name", `"kind-cluster1"`, `"kind-cluster2"`, `cluster-name "cluster1"`, "clustermesh install --cluster-name"}},
			{mesh.KeyClusterID, "1", []string{"same cluster ID", "cluster-id 1", "cluster cluster1", "cluster cluster2", "clustermesh install --cluster-id"}},
			{mesh.KeyPodCIDRs, "10.1.128.0/20", []string{"overlapping pod CIDRs", "10.1.0.0/16", "10.1.128.0/20", "disjoint"}},
			{mesh.KeyMaxConnectedClusters, "511", []string{"different max connected clusters", "max-connected-clusters 255", "has 511", "--max-connected-clusters 511"}},
			{mesh.KeyEtcdEndpoints, "http://127.0.0.1:1", []string{"etcd-endpoints", `"http://127.0.0.1:1" is not an https URL`}},
			{mesh.KeyCache, "maybe", []string{"key cache", `"maybe"`, "set true", "or false"}},
		} {
			t.Run(tc.key, func(t *testing.T) {
				cm, err := c2.Kube.Client.CoreV1().ConfigMaps(testbed.Namespace).Get(t.Context(), mesh.ConfigMapName, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				old := cm.Data[tc.key]
				setConfig(t, c2, tc.key, tc.value)
				defer setConfig(t, c2, tc.key, old)
				_, _, err = run(t, connectArgs...)
				if err == nil {
					t.Fatal("connect succeeded")
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error does not say %q:\n%v", w, err)
					}
				}
				if len(c1.PeersSecret(t)) != 0 || len(c2.PeersSecret(t)) != 0 || len(users(t, c1)) != 0 || len(users(t, c2)) != 0 {
					t.Error("a refused connect wrote something")
				}
			})
		}
		_, _, err := run(t, "connect", kc, "--context", c1.Context, "--destination-context", "nope")
		if err == nil || !strings.Contains(err.Error(), `context "nope" not found`) {
			t.Errorf("unknown context: %v", err)
		}
		_, _, err = run(t, "connect", kc, "--context", c1.Context, "--destination-context", c1.Context)
		if err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("same context twice: %v", err)
		}
	})

	t.Run("a connect failing halfway rolls back", func(t *testing.T) {
		// cluster2's kube-apiserver refuses the update of its mesh Secret,
		// after cluster1's was written.
		failing := c2.ClientWith(t, func(rt http.RoundTripper) http.RoundTripper {
			return testbed.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/secrets/"+mesh.PeersSecretName) {
					return nil, errors.New("injected: connection reset")
				}
				return rt.RoundTrip(r)
			})
		})
		s1, err := mesh.Load(t.Context(), c1.Cluster(nil))
		if err != nil {
			t.Fatal(err)
		}
		s2, err := mesh.Load(t.Context(), c2.Cluster(failing))
		if err != nil {
			t.Fatal(err)
		}
		_, err = mesh.Connect(t.Context(), []mesh.Pair{{A: s1, B: s2}})
		if err == nil || !strings.Contains(err.Error(), "injected") || !strings.Contains(err.Error(), "rolled back") {
			t.Fatalf("connect error: %v", err)
		}
		if d := keys(c1.PeersSecret(t)); len(d) != 0 {
			t.Errorf("cluster1's mesh Secret kept %v", d)
		}
		if u1, u2 := users(t, c1), users(t, c2); len(u1)+len(u2) != 0 {
			t.Errorf("etcd users kept: %v %v", u1, u2)
		}
	})

	t.Run("connect", func(t *testing.T) {
		out := mustRun(t, connectArgs...)
		for _, w := range []string{
			"cluster cluster1 (context \"kind-cluster1\"): created etcd user remote-cluster2",
			"cluster cluster2 (context \"kind-cluster2\"): created etcd user remote-cluster1",
			"cluster cluster1 (context \"kind-cluster1\"): added peer cluster2 in Secret kube-system/clustermesh-peers",
			"cluster cluster2 (context \"kind-cluster2\"): added peer cluster1 in Secret kube-system/clustermesh-peers",
			"connected cluster1 <-> cluster2\n",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		if d := cmp.Diff([]string{"remote-cluster2"}, users(t, c1)); d != "" {
			t.Errorf("cluster1 etcd users (-want +got):\n%s", d)
		}
		if d := cmp.Diff([]string{"remote-cluster1"}, users(t, c2)); d != "" {
			t.Errorf("cluster2 etcd users (-want +got):\n%s", d)
		}
		for _, tc := range []struct{ c, peer *testbed.Cluster }{{c1, c2}, {c2, c1}} {
			data := tc.c.PeersSecret(t)
			if d := cmp.Diff(mesh.PeerKeys(tc.peer.Name), keys(data), cmp.Transformer("sort", func(s []string) []string {
				s = slices.Clone(s)
				slices.Sort(s)
				return s
			})); d != "" {
				t.Errorf("%s mesh Secret keys (-want +got):\n%s", tc.c.Name, d)
			}
			cfg, err := kvstore.ParseClientConfig(data[tc.peer.Name])
			if err != nil {
				t.Fatal(err)
			}
			// The trust anchors are the peer's own settings: its cluster
			// ID and its ConfigMap's pod CIDRs.
			want := kvstore.ClientConfig{
				Endpoints:     []string{tc.peer.Etcd.Env.URL},
				TrustedCAFile: filepath.Join(tc.c.MeshDir, tc.peer.Name+".etcd-client-ca.crt"),
				CertFile:      filepath.Join(tc.c.MeshDir, tc.peer.Name+".etcd-client.crt"),
				KeyFile:       filepath.Join(tc.c.MeshDir, tc.peer.Name+".etcd-client.key"),
				ClusterID:     tc.peer.ID,
				PodCIDRs:      []string{tc.peer.PodCIDR},
			}
			defaults := cmpopts.IgnoreFields(kvstore.ClientConfig{}, "DialTimeout", "KeepAliveTime", "KeepAliveTimeout", "RateLimitQPS", "RateLimitBurst")
			if d := cmp.Diff(want, cfg, defaults); d != "" {
				t.Errorf("%s's config of %s (-want +got):\n%s", tc.c.Name, tc.peer.Name, d)
			}
			// The written credentials log into the peer's etcd as the
			// read-only per-peer user: reading works, writing does not.
			tc.c.SyncMeshDir(t)
			peerCli, err := kvstore.Connect(t.Context(), cfg)
			if err != nil {
				t.Fatalf("%s connects to %s with the written config: %v", tc.c.Name, tc.peer.Name, err)
			}
			defer peerCli.Close()
			paths := tc.peer.Etcd.Env.Paths
			if _, err := kvstore.GetClusterConfig(t.Context(), peerCli, paths, tc.peer.Name); err != nil {
				t.Errorf("%s reads %s's cluster config: %v", tc.c.Name, tc.peer.Name, err)
			}
			if _, err := peerCli.Etcd().Put(t.Context(), paths.Heartbeat(), "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
				t.Errorf("%s writes into %s's etcd: %v, want permission denied", tc.c.Name, tc.peer.Name, err)
			}
		}
		connected = !t.Failed()
	})

	t.Run("connect again changes nothing", func(t *testing.T) {
		needConnected(t)
		rv := func(c *testbed.Cluster) string {
			s, err := c.Kube.Client.CoreV1().Secrets(testbed.Namespace).Get(t.Context(), mesh.PeersSecretName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return s.ResourceVersion
		}
		rev := func(c *testbed.Cluster) int64 {
			st, err := c.Etcd.Env.Connect(t, kvstore.AdminUser).Etcd().AuthStatus(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return int64(st.AuthRevision)
		}
		rv1, rv2, ar1, ar2 := rv(c1), rv(c2), rev(c1), rev(c2)
		out := mustRun(t, connectArgs...)
		// Both clusters read each other through their clustermesh-apiserver's
		// cache of remote state (the ConfigMap's default).
		if want := "connected cluster1 <-> cluster2 (already: nothing changed)\n" +
			"  cluster1 reads cluster2 through the cache of its clustermesh-apiserver (one connection for the cluster; cache: true)\n" +
			"  cluster2 reads cluster1 through the cache of its clustermesh-apiserver (one connection for the cluster; cache: true)\n"; out != want {
			t.Errorf("output %q, want %q", out, want)
		}
		if rv(c1) != rv1 || rv(c2) != rv2 {
			t.Error("a second connect rewrote a mesh Secret")
		}
		if rev(c1) != ar1 || rev(c2) != ar2 {
			t.Error("a second connect changed etcd users or roles")
		}
	})

	t.Run("status", func(t *testing.T) {
		needConnected(t)
		testStatus(t, bed, kc)
	})

	t.Run("disconnect", func(t *testing.T) {
		needConnected(t)
		c2.SyncMeshDir(t)
		oldCfg, err := kvstore.LoadClientConfig(filepath.Join(c2.MeshDir, c1.Name))
		if err != nil {
			t.Fatal(err)
		}
		out := mustRun(t, "disconnect", kc, "--context", c1.Context, "--destination-context", c2.Context)
		for _, w := range []string{"removed peer cluster2", "removed peer cluster1", "deleted etcd user remote-cluster2",
			"deleted etcd user remote-cluster1", "disconnected cluster1 <-> cluster2\n"} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		for _, c := range bed.Clusters[:2] {
			if d := keys(c.PeersSecret(t)); len(d) != 0 {
				t.Errorf("%s mesh Secret kept %v", c.Name, d)
			}
			if u := users(t, c); len(u) != 0 {
				t.Errorf("%s etcd kept users %v", c.Name, u)
			}
		}
		// The certificate issued for the deleted user no longer reads.
		if cli, err := kvstore.Connect(t.Context(), oldCfg); err == nil {
			_, err = kvstore.GetClusterConfig(t.Context(), cli, c1.Etcd.Env.Paths, c1.Name)
			_ = cli.Close()
			if err == nil {
				t.Error("the disconnected peer's certificate still reads cluster1's etcd")
			}
		}
		out = mustRun(t, "disconnect", kc, "--context", c1.Context, "--destination-context", c2.Context)
		if want := "disconnected cluster1 <-> cluster2 (already: nothing changed)\n"; out != want {
			t.Errorf("second disconnect: %q, want %q", out, want)
		}
	})

	t.Run("mesh mode pairs every two clusters", func(t *testing.T) {
		args := []string{kc, "--context", c1.Context, "--destination-context", c2.Context + "," + c3.Context, "--connection-mode", "mesh"}
		out := mustRun(t, append([]string{"connect"}, args...)...)
		for _, w := range []string{"connected cluster1 <-> cluster2\n", "connected cluster1 <-> cluster3\n", "connected cluster2 <-> cluster3\n"} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		for _, c := range bed.Clusters {
			var wantPeers, wantUsers []string
			for _, o := range bed.Clusters {
				if o != c {
					wantPeers = append(wantPeers, o.Name)
					wantUsers = append(wantUsers, kvstore.PeerUser(o.Name))
				}
			}
			if d := cmp.Diff(wantPeers, mesh.ConfiguredPeers(&corev1.Secret{Data: c.PeersSecret(t)})); d != "" {
				t.Errorf("%s peers (-want +got):\n%s", c.Name, d)
			}
			if d := cmp.Diff(wantUsers, users(t, c)); d != "" {
				t.Errorf("%s etcd users (-want +got):\n%s", c.Name, d)
			}
		}
		mustRun(t, append([]string{"disconnect"}, args...)...)
		for _, c := range bed.Clusters {
			if d := keys(c.PeersSecret(t)); len(d) != 0 || len(users(t, c)) != 0 {
				t.Errorf("%s kept %v and users %v", c.Name, d, users(t, c))
			}
		}
	})
}

// startAgent runs a real agent of cluster c on node, reading c's mesh
// directory, and returns its API socket.
func startAgent(t *testing.T, c *testbed.Cluster, node string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cm-cli") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	a, err := server.New(t.Context(), server.Config{NodeName: node, ClusterName: c.Name, ClusterID: c.ID, MeshConfigDir: c.MeshDir,
		APISocket: sock, RestConfig: c.Kube.Config}, nil)
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Go(t, a.Run)
	return sock
}

func testStatus(t *testing.T, bed *testbed.Bed, kc string) {
	c1, c2 := bed.Clusters[0], bed.Clusters[1]
	c2.SetAPIServerReady(t, 1)
	c2.SyncMeshDir(t)
	s1, s2 := startAgent(t, c2, "n1"), startAgent(t, c2, "n2")
	args := []string{"status", kc, "--context", c2.Context, "--agent-socket", "n1=" + s1, "--agent-socket", "n2=" + s2}

	// --wait returns once both nodes are connected to and synced with
	// cluster1; the JSON is stable (golden file).
	// The agents' version is the build's, the same on both nodes.
	out := mustRun(t, append(args, "--wait", "--wait-duration", "60s", "--wait-interval", "200ms", "-o", "json")...)
	golden(t, "status.golden.json", strings.ReplaceAll(out, `"version": "`+version.Get().Version+`"`, `"version": "<this build's>"`))

	text := mustRun(t, args...)
	for _, w := range []string{"Cluster:     cluster2 (ID 2)", "OK   apiserver: 1/1 replicas ready", "peers:     1 configured [cluster1]",
		"OK   agents:    2/2 answered; peers connected per node: min 1, avg 1, max 1",
		"OK   peer cluster1 (ID 1): connected on 2/2 nodes, ready on 2/2; synced: nodes 2/2, identities 2/2, ip 2/2, services 2/2"} {
		if !strings.Contains(text, w) {
			t.Errorf("text status lacks %q:\n%s", w, text)
		}
	}
	var fromYAML status.Report
	if err := yaml.Unmarshal([]byte(mustRun(t, append(args, "-o", "yaml")...)), &fromYAML); err != nil || fromYAML.Cluster != "cluster2" {
		t.Errorf("-o yaml: %v %+v", err, fromYAML)
	}

	// cluster1 has no agent and no apiserver Deployment: --wait fails at
	// its deadline saying what is missing, with hints.
	_, errOut, err := run(t, "status", kc, "--context", c1.Context, "--wait", "--wait-duration", "1s", "--wait-interval", "200ms")
	if err == nil || !strings.Contains(err.Error(), "timed out after 1s, still missing") ||
		!strings.Contains(err.Error(), "the clustermesh-apiserver is not ready") || !strings.Contains(err.Error(), "no agent found") {
		t.Errorf("status --wait of an unready cluster: %v", err)
	}
	if !strings.Contains(errOut, "waiting for the mesh of cluster1") {
		t.Errorf("--wait shows no progress: %q", errOut)
	}

	// A node whose agent does not answer, and a peer the agents cannot
	// reach, are errors with hints.
	out, _, _ = run(t, "status", kc, "--context", c2.Context, "--agent-socket", "n1="+s1, "--agent-socket", "n3=/nonexistent/agent.sock", "-o", "json")
	var r status.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Errors) != 1 || r.Errors[0].Node != "n3" || !strings.Contains(r.Errors[0].Message, "agent did not answer") || r.Errors[0].Hint == "" {
		t.Errorf("errors of an unanswering agent: %+v", r.Errors)
	}

	// Through the Kubernetes pod proxy, as against a real cluster.
	testProxySource(t, c2, s1)
}

// testProxySource serves agent n1's status as the chart's sidecar does and
// reads it through the real kube-apiserver's pod proxy. The kube-apiserver
// refuses to proxy to loopback addresses, so the sidecar listens on this
// machine's first non-loopback IPv4 address.
func testProxySource(t *testing.T, c *testbed.Cluster, socket string) {
	ip := hostIP()
	if ip == "" {
		t.Log("skipping the pod proxy check: no non-loopback IPv4 address (the kube-apiserver does not proxy to loopback)")
		return
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	meshtest.Go(t, func(ctx context.Context) error {
		return status.Serve(ctx, net.JoinHostPort(ip, strconv.Itoa(port)), socket)
	})
	pods := c.Kube.Client.CoreV1().Pods(testbed.Namespace)
	pod, err := pods.Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "clustermesh-agent-abcde", Labels: map[string]string{mesh.NameLabel: mesh.AgentName}},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: mesh.AgentContainer, Image: "clustermesh:test"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase, pod.Status.PodIP, pod.Status.PodIPs = corev1.PodRunning, ip, []corev1.PodIP{{IP: ip}}
	if _, err := pods.UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	src := status.ProxySource{Kube: c.Kube.Client, Namespace: testbed.Namespace, Port: port}
	var got []status.NodeStatus
	testutil.Eventually(t, 10*time.Second, "agent status through the pod proxy", func() bool {
		got, err = src.Collect(t.Context())
		return err == nil && len(got) == 1 && got[0].Err == nil
	})
	if got[0].Node != "n1" || got[0].Status.Node != "n1" || len(got[0].Status.Peers) != 1 || !got[0].Status.Peers[0].Ready {
		t.Errorf("status through the pod proxy: %+v %+v", got[0], got[0].Status)
	}
}

func hostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s (-want +got):\n%s", name, d)
	}
}
