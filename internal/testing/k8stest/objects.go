package k8stest

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kubernetes objects, created the way kubelet and controllers would (the
// test bed runs no kubelet and no controller-manager).

// CreateNamespace creates namespace name.
func (c *Cluster) CreateNamespace(t testing.TB, name string) {
	t.Helper()
	_, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// CreateNode creates node name with pod CIDR cidr, and sets its internal
// address to ip as its kubelet would.
func (c *Cluster) CreateNode(t testing.TB, name, ip, cidr string) {
	t.Helper()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name},
			Annotations: map[string]string{"network.cilium.io/wg-pub-key": "dGhpcyBpcyBhIDMyIGJ5dGUga2V5IGZvciB0ZXN0cyE="}},
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
	}
	n, err := c.Client.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}
	n.Status.NodeInfo.BootID = "boot-" + name
	if _, err := c.Client.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// CreatePod creates a running pod with spec (its Containers may be empty:
// one is added) and, when ip is set, reports ip and hostIP in its status
// as kubelet would.
func (c *Cluster) CreatePod(t testing.TB, ns, name string, labels map[string]string, spec corev1.PodSpec, ip, hostIP string) *corev1.Pod {
	t.Helper()
	if len(spec.Containers) == 0 {
		spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: spec}
	p, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	if ip != "" {
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: hostIP}
	}
	p, err = c.Client.CoreV1().Pods(ns).UpdateStatus(t.Context(), p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Endpoint is one address of an EndpointSlice written by SetEndpointSlice.
type Endpoint struct {
	IP                 string
	Ready, Terminating bool
}

// SetEndpointSlice creates or replaces the EndpointSlice "<svc>-abc" of
// Service ns/svc with endpoints on port "http" port/TCP.
func (c *Cluster) SetEndpointSlice(t testing.TB, ns, svc string, port int32, eps ...Endpoint) {
	t.Helper()
	name, proto := "http", corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &port}},
	}
	for _, ep := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{ep.IP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ep.Ready, Terminating: &ep.Terminating},
		})
	}
	api := c.Client.DiscoveryV1().EndpointSlices(ns)
	old, err := api.Get(t.Context(), es.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(t.Context(), es, metav1.CreateOptions{})
	case err == nil:
		es.ResourceVersion = old.ResourceVersion
		_, err = api.Update(t.Context(), es, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}
