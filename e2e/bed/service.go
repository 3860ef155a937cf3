//go:build linux

package bed

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CreateService creates a ClusterIP Service selecting pods by selector on
// the workload port (TCP and UDP), with annotations, and returns its
// ClusterIP:port.
func (c *Cluster) CreateService(ctx context.Context, namespace, name string, selector, annotations map[string]string) (string, error) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: annotations},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: WorkloadPort, TargetPort: intstr.FromString("http")},
			{Name: "udp", Protocol: corev1.ProtocolUDP, Port: WorkloadPort, TargetPort: intstr.FromString("udp")},
		}}}
	got, err := c.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("cluster %s: create Service %s/%s: %w", c.Name, namespace, name, err)
	}
	ip, err := netip.ParseAddr(got.Spec.ClusterIP)
	if err != nil {
		return "", fmt.Errorf("cluster %s: Service %s/%s has no ClusterIP: %w", c.Name, namespace, name, err)
	}
	return netip.AddrPortFrom(ip, WorkloadPort).String(), nil
}

// Annotate sets (or, with an empty value, removes) annotations of a
// Service.
func (c *Cluster) Annotate(ctx context.Context, namespace, name string, kv map[string]string) error {
	svcs := c.Client.CoreV1().Services(namespace)
	svc, err := svcs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("cluster %s: Service %s/%s: %w", c.Name, namespace, name, err)
	}
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	for k, v := range kv {
		if v == "" {
			delete(svc.Annotations, k)
		} else {
			svc.Annotations[k] = v
		}
	}
	if _, err := svcs.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("cluster %s: annotate Service %s/%s: %w", c.Name, namespace, name, err)
	}
	return nil
}

// Port is the workload port as a string, for addresses.
var Port = strconv.Itoa(WorkloadPort)

// ServiceAddr is a Service's ClusterIP with the workload port.
func (c *Cluster) ServiceAddr(ctx context.Context, namespace, name string) (string, error) {
	svc, err := c.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("cluster %s: Service %s/%s: %w", c.Name, namespace, name, err)
	}
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		return "", fmt.Errorf("cluster %s: Service %s/%s has no ClusterIP: %w", c.Name, namespace, name, err)
	}
	return netip.AddrPortFrom(ip, WorkloadPort).String(), nil
}

// ServiceAddrs are a Service's ClusterIPs (one per family of a dual-stack
// Service, the primary first) with the workload port.
func (c *Cluster) ServiceAddrs(ctx context.Context, namespace, name string) ([]string, error) {
	svc, err := c.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: Service %s/%s: %w", c.Name, namespace, name, err)
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []string
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: Service %s/%s has no ClusterIP: %w", c.Name, namespace, name, err)
		}
		out = append(out, netip.AddrPortFrom(ip, WorkloadPort).String())
	}
	return out, nil
}
