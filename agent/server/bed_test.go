package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/clustermesh/clustermesh/agent/server"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, what, cond)
}

// agentBed is one clustermesh-agent of cluster1 against a real
// kube-apiserver, with its mesh directory and API socket.
type agentBed struct {
	kube    *k8stest.Cluster
	meshDir string
	socket  string
	agent   *server.Agent
}

// startAgent runs an agent for node of cluster1; prepare (optional) runs
// before the agent starts (to seed its datapath as pinned state would).
func startAgent(t *testing.T, kube *k8stest.Cluster, node string, prepare func(*agentBed), opts ...func(*server.Config)) *agentBed {
	t.Helper()
	meshDir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "cm-agent") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	b := &agentBed{kube: kube, meshDir: meshDir, socket: filepath.Join(sockDir, "agent.sock")}
	cfg := server.Config{
		NodeName: node, ClusterName: "cluster1", ClusterID: 1, MeshConfigDir: meshDir,
		APISocket: b.socket, RestConfig: kube.Config,
	}
	for _, o := range opts {
		o(&cfg)
	}
	b.agent, err = server.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(b)
	}
	meshtest.Go(t, func(ctx context.Context) error {
		err := b.agent.Run(ctx)
		if err != nil && ctx.Err() == nil {
			t.Errorf("agent stopped: %v", err)
		}
		return err
	})
	return b
}

// connect adds peer to the agent's mesh directory.
func (b *agentBed) connect(t *testing.T, p *meshtest.Peer) { p.WriteMeshFile(t, b.meshDir) }

// get queries the agent's local API over its unix socket.
func (b *agentBed) get(t *testing.T, path string, into any) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", b.socket)
	}}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://agent"+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", path, resp.Status, body)
	}
	if s, ok := into.(*string); ok {
		*s = string(body)
		return
	}
	if err := json.Unmarshal(body, into); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// waitAPI waits for the socket to answer.
func (b *agentBed) waitAPI(t *testing.T) {
	eventually(t, "local API up", func() bool {
		c, err := net.Dial("unix", b.socket)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
}

// createService creates a Service with one port "http" 80 → 8080 and
// returns its cluster IP.
func createService(t *testing.T, kube *k8stest.Cluster, ns, name string, ann map[string]string) string {
	t.Helper()
	svc, err := kube.Client.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP,
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

func annotate(t *testing.T, kube *k8stest.Cluster, ns, name string, ann map[string]string) {
	t.Helper()
	svc, err := kube.Client.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Annotations = ann
	if _, err := kube.Client.CoreV1().Services(ns).Update(t.Context(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// peerNode is the etcd node record of a peer node n<i> with pod CIDR
// 10.<id>.<i>.0/24 and address 192.168.<id>.<i>.
func peerNode(cluster string, id uint32, i int) string {
	return fmt.Sprintf(`{"Name":"n%d","Cluster":%q,"IPAddresses":[{"Type":"InternalIP","IP":"192.168.%d.%d"}],`+
		`"IPv4AllocCIDR":{"IP":"10.%d.%d.0","Mask":"////AA=="},"ClusterID":%d}`, i, cluster, id, i, id, i, id)
}

// peerService is a peer's export of Service ns/name with backends on port
// "http" 8080.
func peerService(p *meshtest.Peer, ns, name string, shared bool, backends ...string) string {
	be := map[string]map[string]map[string]any{}
	for _, ip := range backends {
		be[ip] = map[string]map[string]any{"http": {"Protocol": "TCP", "Port": 8080}}
	}
	v := map[string]any{
		"cluster": p.Name, "namespace": ns, "name": name, "frontends": map[string]any{}, "backends": be,
		"labels": map[string]string{}, "selector": map[string]string{}, "includeExternal": true, "shared": shared, "clusterID": p.ID,
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// removeMeshFile disconnects peer p, as `clustermesh disconnect` does.
func removeMeshFile(t *testing.T, b *agentBed, p *meshtest.Peer) {
	t.Helper()
	if err := os.Remove(filepath.Join(b.meshDir, p.Name)); err != nil {
		t.Fatal(err)
	}
}

// status returns the HTTP status code of GET path on the local API.
func (b *agentBed) status(t *testing.T, path string) int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", b.socket)
	}}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://agent"+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}
