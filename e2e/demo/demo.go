package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/agent/server"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/cli"
	"github.com/clustermesh/clustermesh/cli/mesh"
)

// Run runs the demo, writing what happens to out; dir holds its files.
func Run(ctx context.Context, out io.Writer, dir string) error {
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	g := newGroup(ctx)
	defer g.stop()
	ctx = g.ctx

	say("==> starting two Kubernetes API servers (cluster1, cluster2)")
	clusters := []*cluster{{name: "cluster1", id: 1}, {name: "cluster2", id: 2}}
	kubes := map[string]*kube{}
	for _, c := range clusters {
		k, err := startKube()
		if err != nil {
			return err
		}
		defer func() { _ = k.env.Stop() }()
		c.kube, kubes[c.name] = k, k
		c.dir = filepath.Join(dir, c.name)
		c.nodes = []string{c.name + "-node-a", c.name + "-node-b"}
		if err := os.MkdirAll(c.meshDir(), 0o700); err != nil {
			return err
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		c.etcdURL = "https://127.0.0.1:" + strconv.Itoa(port)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, kubes); err != nil {
		return err
	}
	clusterctl := func(args ...string) (string, error) {
		var buf bytes.Buffer
		cmd := cli.New()
		cmd.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
		cmd.SetOut(&buf)
		cmd.SetErr(&buf)
		err := cmd.ExecuteContext(ctx)
		say("$ clustermesh %s\n%s", strings.Join(args, " "), indent(buf.String()))
		if err != nil {
			return buf.String(), fmt.Errorf("clustermesh %s: %w", strings.Join(args, " "), err)
		}
		return buf.String(), nil
	}

	for _, c := range clusters {
		say("==> installing clustermesh into %s", c.name)
		if _, err := clusterctl("install", "--context", c.name, "--cluster-name", c.name, "--cluster-id", strconv.Itoa(int(c.id)),
			"--pod-cidrs", fmt.Sprintf("10.%d.0.0/16", c.id), "--etcd-endpoints", c.etcdURL); err != nil {
			return err
		}
		// The demo's agents are processes, not pods: their mesh directory
		// is a local one instead of the chart's volume mount.
		cms := c.kube.client.CoreV1().ConfigMaps(mesh.DefaultNamespace)
		cm, err := cms.Get(ctx, mesh.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cm.Data[mesh.KeyMeshConfigDir] = c.meshDir()
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return err
		}
		if err := c.createWorkload(ctx); err != nil {
			return err
		}
		if err := c.runAPIServer(ctx, g); err != nil {
			return err
		}
	}

	say("==> pairing the clusters")
	if _, err := clusterctl("connect", "--context", "cluster1", "--destination-context", "cluster2"); err != nil {
		return err
	}
	agents := map[string]*server.Agent{}
	var sockets []string
	for _, c := range clusters {
		if err := c.syncMeshDir(ctx); err != nil {
			return err
		}
		for _, n := range c.nodes {
			sock := filepath.Join(c.dir, n+".sock")
			a, err := server.New(ctx, server.Config{NodeName: n, ClusterName: c.name, ClusterID: c.id, MeshConfigDir: c.meshDir(),
				APISocket: sock, RestConfig: c.kube.config, Datapath: "none"}, nil)
			if err != nil {
				return err
			}
			g.run("agent "+n, a.Run)
			agents[n] = a
			sockets = append(sockets, c.name+":"+n+"="+sock)
		}
	}
	say("==> waiting until every agent is connected to its peer")
	for _, c := range clusters {
		args := []string{"status", "--context", c.name, "--wait", "--wait-duration", "2m", "--wait-interval", "500ms"}
		for _, s := range sockets {
			if cl, sock, _ := strings.Cut(s, ":"); cl == c.name {
				args = append(args, "--agent-socket", sock)
			}
		}
		if _, err := clusterctl(args...); err != nil {
			return errors.Join(err, g.err())
		}
	}

	say("==> the global Service rebel-base, seen by cluster1-node-a (backends of both clusters)")
	node := filepath.Join(clusters[0].dir, "cluster1-node-a.sock")
	if err := waitFor(ctx, 30*time.Second, "rebel-base backends from cluster1 and cluster2", func() (bool, string) {
		got := backendClusters(ctx, node)
		return slices.Equal(got, []string{"cluster1", "cluster1", "cluster2", "cluster2"}), fmt.Sprint(got)
	}); err != nil {
		return err
	}
	showServices(ctx, say, node)

	say("==> affinity local: cluster1 keeps its own backends while one is ready")
	svcs := clusters[0].kube.client.CoreV1().Services("default")
	svc, err := svcs.Get(ctx, "rebel-base", metav1.GetOptions{})
	if err != nil {
		return err
	}
	svc.Annotations["service.cilium.io/affinity"] = "local"
	if _, err := svcs.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, "only local backends", func() (bool, string) {
		got := backendClusters(ctx, node)
		return slices.Equal(got, []string{"cluster1", "cluster1"}), fmt.Sprint(got)
	}); err != nil {
		return err
	}
	showServices(ctx, say, node)
	say("==> cluster1's rebel-base pods stop being ready: cluster2's backends take over")
	if err := clusters[0].setBackendsReady(ctx, []string{"10.1.1.2", "10.1.2.2"}, false); err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, "only remote backends", func() (bool, string) {
		got := backendClusters(ctx, node)
		return slices.Equal(got, []string{"cluster2", "cluster2"}), fmt.Sprint(got)
	}); err != nil {
		return err
	}
	showServices(ctx, say, node)

	say("==> cross-cluster policy: x-wing of cluster1 may reach rebel-base of cluster2 (Cilium's example, kind changed)")
	for _, c := range clusters {
		if err := applyPolicy(ctx, c, seedPolicies[c.name]); err != nil {
			return err
		}
	}
	ids, err := identitiesOf(ctx, kubes)
	if err != nil {
		return err
	}
	verdicts := []struct {
		from, to string
		want     bool
	}{{"x-wing", "rebel-base", true}, {"tie-fighter", "rebel-base", false}}
	// rebel-base-a of cluster2 runs on cluster2-node-a.
	sock2 := filepath.Join(clusters[1].dir, "cluster2-node-a.sock")
	for _, v := range verdicts {
		from := ids["cluster1/"+v.from]
		if err := waitFor(ctx, 30*time.Second, fmt.Sprintf("%s → rebel-base verdict", v.from), func() (bool, string) {
			got, enforced := ingressVerdict(ctx, sock2, "default/rebel-base-a", from, 80)
			return enforced && got == v.want, fmt.Sprintf("allowed=%v enforced=%v", got, enforced)
		}); err != nil {
			return err
		}
		word := "DENIED"
		if v.want {
			word = "allowed"
		}
		say("    cluster1/%s (identity %d) → cluster2/rebel-base-a TCP/80: %s by cluster2-node-a", v.from, from, word)
	}
	if err := g.err(); err != nil {
		return err
	}
	say("==> demo complete: two clusters, one mesh")
	return nil
}

var seedPolicies = map[string]string{
	"cluster1": `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata: {name: allow-cross-cluster, namespace: default}
spec:
  description: "Allow x-wing in cluster1 to contact rebel-base in cluster2"
  endpointSelector:
    matchLabels: {name: x-wing, io.cilium.k8s.policy.cluster: cluster1}
  egress:
  - toEndpoints:
    - matchLabels: {name: rebel-base, io.cilium.k8s.policy.cluster: cluster2}
`,
	"cluster2": `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata: {name: allow-cross-cluster, namespace: default}
spec:
  description: "Allow x-wing in cluster1 to contact rebel-base in cluster2"
  endpointSelector:
    matchLabels: {name: rebel-base, io.cilium.k8s.policy.cluster: cluster2}
  ingress:
  - fromEndpoints:
    - matchLabels: {name: x-wing, io.cilium.k8s.policy.cluster: cluster1}
`,
}

func applyPolicy(ctx context.Context, c *cluster, doc string) error {
	p := &cmv1.ClusterMeshNetworkPolicy{}
	if err := yaml.UnmarshalStrict([]byte(doc), p); err != nil {
		return fmt.Errorf("demo policy: %w", err)
	}
	rc, err := cmv1.NewRESTClient(c.kube.config)
	if err != nil {
		return err
	}
	if err := rc.Post().Namespace("default").Resource(cmv1.NetworkPolicyResource.Resource).Body(p).Do(ctx).Error(); err != nil {
		return fmt.Errorf("create policy in %s: %w", c.name, err)
	}
	return nil
}

// identitiesOf returns "cluster/app" → the identity the clustermesh-apiserver
// allocated.
func identitiesOf(ctx context.Context, kubes map[string]*kube) (map[string]uint32, error) {
	out := map[string]uint32{}
	for name, k := range kubes {
		rc, err := cmv1.NewRESTClient(k.config)
		if err != nil {
			return nil, err
		}
		list, err := cmv1.ListIdentities(ctx, rc)
		if err != nil {
			return nil, err
		}
		for _, in := range list.Items {
			for _, l := range in.SecurityLabels {
				if app, ok := strings.CutPrefix(l, "k8s:name="); ok {
					id, _ := in.NumericID()
					out[name+"/"+app] = uint32(id)
				}
			}
		}
	}
	return out, nil
}

func get(ctx context.Context, socket, path string, into any) error {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(into)
}

// backendClusters returns the clusters of rebel-base's backends, sorted.
func backendClusters(ctx context.Context, socket string) []string {
	var svcs []server.ServiceEntry
	if get(ctx, socket, "/v1/services", &svcs) != nil {
		return nil
	}
	var out []string
	for _, s := range svcs {
		if s.Name == "rebel-base" {
			for _, b := range s.Backends {
				out = append(out, b.Cluster)
			}
		}
	}
	slices.Sort(out)
	return out
}

func showServices(ctx context.Context, say func(string, ...any), socket string) {
	var svcs []server.ServiceEntry
	if get(ctx, socket, "/v1/services", &svcs) != nil {
		return
	}
	for _, s := range svcs {
		if s.Name != "rebel-base" {
			continue
		}
		var bs []string
		for _, b := range s.Backends {
			bs = append(bs, b.Address+" ("+b.Cluster+")")
		}
		say("    %s/%s %s → %s", s.Namespace, s.Name, s.Frontend, strings.Join(bs, ", "))
	}
}

// ingressVerdict is the datapath's verdict, from the agent's computed
// policy, for a TCP flow from identity to endpoint on port.
func ingressVerdict(ctx context.Context, socket, endpoint string, from uint32, port uint16) (allowed, enforced bool) {
	var p server.PoliciesResponse
	if get(ctx, socket, "/v1/policies", &p) != nil {
		return false, false
	}
	for _, e := range p.Endpoints {
		if e.Endpoint != endpoint {
			continue
		}
		if !e.EnforceIngress {
			return true, false
		}
		for _, r := range e.Rules {
			if r.Direction == "ingress" && r.Verdict == "allow" && (r.Identity == 0 || r.Identity == from) &&
				(r.Protocol == 0 || r.Protocol == 6) && (r.Port == 0 || port >= r.Port && port <= max(r.Port, r.EndPort)) {
				return true, true
			}
		}
		return false, true
	}
	return false, false
}

func waitFor(ctx context.Context, d time.Duration, what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s (last seen: %s)", d, what, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
