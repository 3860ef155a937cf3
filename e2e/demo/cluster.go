package demo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/clustermesh/clustermesh/cli/mesh"
	apiserver "github.com/clustermesh/clustermesh/clustermesh-apiserver/server"
)

// cluster is one demo cluster.
type cluster struct {
	name    string
	id      uint32
	kube    *kube
	dir     string // its files: certificates, etcd data, mesh dir, sockets
	etcdURL string
	nodes   []string
}

func (c *cluster) meshDir() string { return filepath.Join(c.dir, "peers") }

// podCIDR of node i (0-based): 10.<id>.<i+1>.0/24.
func (c *cluster) podCIDR(i int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", c.id, i+1))
}

// runAPIServer runs the clustermesh-apiserver as the chart's Deployment
// does (certificates from the installed Secrets, embedded etcd), and
// reports its Deployment ready, which the controller-manager would do for
// a pod (the test bed runs no controller-manager and no kubelet).
func (c *cluster) runAPIServer(ctx context.Context, g *group) error {
	write := func(secret, key string) (string, error) {
		s, err := c.kube.client.CoreV1().Secrets(mesh.DefaultNamespace).Get(ctx, secret, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("read Secret %s: %w", secret, err)
		}
		p := filepath.Join(c.dir, secret+"-"+key)
		return p, os.WriteFile(p, s.Data[key], 0o600)
	}
	files := map[string]string{}
	for _, f := range [][2]string{{mesh.ServerSecretName, mesh.TLSCertKey}, {mesh.ServerSecretName, mesh.TLSKeyKey},
		{mesh.ServerSecretName, mesh.CACertKey}, {mesh.AdminSecretName, mesh.TLSCertKey}, {mesh.AdminSecretName, mesh.TLSKeyKey}} {
		p, err := write(f[0], f[1])
		if err != nil {
			return err
		}
		files[f[0]+"/"+f[1]] = p
	}
	cfg := apiserver.Config{
		ClusterName: c.name, ClusterID: c.id, RestConfig: c.kube.config,
		EtcdDataDir: filepath.Join(c.dir, "etcd"), EtcdListenClientURLs: []string{c.etcdURL},
		TLSCertFile: files[mesh.ServerSecretName+"/"+mesh.TLSCertKey], TLSKeyFile: files[mesh.ServerSecretName+"/"+mesh.TLSKeyKey],
		TLSCAFile:     files[mesh.ServerSecretName+"/"+mesh.CACertKey],
		AdminCertFile: files[mesh.AdminSecretName+"/"+mesh.TLSCertKey], AdminKeyFile: files[mesh.AdminSecretName+"/"+mesh.TLSKeyKey],
		HeartbeatInterval: time.Second, MetricsAddr: "127.0.0.1:0", DefaultGlobalNamespace: true, // the binary's default
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	cfg.HealthAddr = "127.0.0.1:" + strconv.Itoa(port)
	g.run("clustermesh-apiserver "+c.name, func(ctx context.Context) error { return apiserver.Run(ctx, cfg, nil) })
	// Ready: its etcd serves, auth is bootstrapped and the export synced.
	if err := waitFor(ctx, 2*time.Minute, "clustermesh-apiserver of "+c.name+" ready", func() (bool, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.HealthAddr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	}); err != nil {
		return errors.Join(err, g.err())
	}
	deps := c.kube.client.AppsV1().Deployments(mesh.DefaultNamespace)
	d, err := deps.Get(ctx, mesh.APIServerName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the installed Deployment %s: %w", mesh.APIServerName, err)
	}
	d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, 1, 1
	if _, err := deps.UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("report the Deployment ready: %w", err)
	}
	return nil
}

// createWorkload creates the nodes, the star-wars pods and the global
// rebel-base Service with its EndpointSlice, as kubelets and controllers
// would report them.
func (c *cluster) createWorkload(ctx context.Context) error {
	core := c.kube.client.CoreV1()
	for i, n := range c.nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}, Spec: corev1.NodeSpec{PodCIDR: c.podCIDR(i).String(), PodCIDRs: []string{c.podCIDR(i).String()}}}
		node, err := core.Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create node %s: %w", n, err)
		}
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.168.%d.%d", c.id, i+1)}}
		if _, err := core.Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("node %s status: %w", n, err)
		}
	}
	var backends []string
	for i, p := range []struct{ name, app string }{{"rebel-base-a", "rebel-base"}, {"rebel-base-b", "rebel-base"}, {"x-wing", "x-wing"}, {"tie-fighter", "tie-fighter"}} {
		node := i % len(c.nodes)
		ip := c.podCIDR(node).Addr().Next().Next() // .2
		for range i / len(c.nodes) {
			ip = ip.Next()
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: "default", Labels: map[string]string{"name": p.app}},
			Spec: corev1.PodSpec{NodeName: c.nodes[node], Containers: []corev1.Container{{Name: "app", Image: "demo", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}}}}
		pod, err := core.Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create pod %s: %w", p.name, err)
		}
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}},
			HostIP: fmt.Sprintf("192.168.%d.%d", c.id, node+1)}
		if _, err := core.Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("pod %s status: %w", p.name, err)
		}
		if p.app == "rebel-base" {
			backends = append(backends, ip.String())
		}
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "rebel-base", Namespace: "default",
		Annotations: map[string]string{"service.cilium.io/global": "true"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"name": "rebel-base"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}
	if _, err := core.Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create service rebel-base: %w", err)
	}
	return c.setBackendsReady(ctx, backends, true)
}

// setBackendsReady writes rebel-base's EndpointSlice, as the endpoint
// slice controller would, with every backend ready or not.
func (c *cluster) setBackendsReady(ctx context.Context, ips []string, ready bool) error {
	name, port := "http", int32(80)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "rebel-base-demo", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "rebel-base"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	api := c.kube.client.DiscoveryV1().EndpointSlices("default")
	old, err := api.Get(ctx, es.Name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = old.ResourceVersion
		_, err = api.Update(ctx, es, metav1.UpdateOptions{})
	} else {
		_, err = api.Create(ctx, es, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("write rebel-base's EndpointSlice: %w", err)
	}
	return nil
}

// syncMeshDir writes the mesh Secret into the mesh directory, as the
// kubelet refreshes a Secret volume (certificates before configs).
func (c *cluster) syncMeshDir(ctx context.Context) error {
	s, err := c.kube.client.CoreV1().Secrets(mesh.DefaultNamespace).Get(ctx, mesh.PeersSecretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the mesh Secret: %w", err)
	}
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return strings.Compare(strconv.FormatBool(!strings.Contains(a, "."))+a, strconv.FormatBool(!strings.Contains(b, "."))+b)
	})
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join(c.meshDir(), k), s.Data[k], 0o600); err != nil {
			return err
		}
	}
	return nil
}
