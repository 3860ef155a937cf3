//go:build linux

package bed

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CreateService creates a ClusterIP Service selecting pods by selector on
// the workload port (TCP and UDP), with annotations, and returns its
// primary ClusterIP:port. The Service has the bed's families: in a
// dual-stack bed it requires both (IPFamilyPolicy RequireDualStack, IPv4
// first, so that the primary ClusterIP is IPv4 as in an IPv4 bed; its
// IPv6 one is ServiceAddrOf's), else it is single-stack with the
// cluster's one family. The Service is created in that shape from the
// start: a global Service's peers see no single-stack version of it.
func (c *Cluster) CreateService(ctx context.Context, namespace, name string, selector, annotations map[string]string) (string, error) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: annotations},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: WorkloadPort, TargetPort: intstr.FromString("http")},
			{Name: "udp", Protocol: corev1.ProtocolUDP, Port: WorkloadPort, TargetPort: intstr.FromString("udp")},
		}}}
	if c.b.fam == FamilyDualStack {
		requireDualStack(&svc.Spec)
	}
	got, err := c.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("cluster %s: create Service %s/%s: %w", c.Name, namespace, name, err)
	}
	addrs, err := c.clusterIPs(got)
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}

// requireDualStack asks for a ClusterIP of each family, the Service's
// primary family first (IPv4 when it has none yet).
func requireDualStack(spec *corev1.ServiceSpec) {
	policy := corev1.IPFamilyPolicyRequireDualStack
	spec.IPFamilyPolicy = &policy
	first := corev1.IPv4Protocol
	if len(spec.IPFamilies) > 0 {
		first = spec.IPFamilies[0]
	}
	spec.IPFamilies = []corev1.IPFamily{first, corev1.IPv6Protocol}
	if first == corev1.IPv6Protocol {
		spec.IPFamilies[1] = corev1.IPv4Protocol
	}
}

// RequireDualStack makes an existing Service of a dual-stack bed
// dual-stack (IPFamilyPolicy RequireDualStack), keeping its primary
// ClusterIP, as `kubectl patch` would upgrade a Service applied from a
// manifest without ipFamilyPolicy; it returns the Service's ClusterIPs
// with the workload port, the primary first. The kube-apiserver allocates
// the new ClusterIP in the update itself.
func (c *Cluster) RequireDualStack(ctx context.Context, namespace, name string) ([]string, error) {
	if c.b.fam != FamilyDualStack {
		return nil, fmt.Errorf("cluster %s: Service %s/%s: a %v bed has no dual-stack Services", c.Name, namespace, name, c.b.fam)
	}
	svcs := c.Client.CoreV1().Services(namespace)
	svc, err := svcs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: Service %s/%s: %w", c.Name, namespace, name, err)
	}
	requireDualStack(&svc.Spec)
	got, err := svcs.Update(ctx, svc, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: make Service %s/%s dual-stack: %w", c.Name, namespace, name, err)
	}
	addrs, err := c.clusterIPs(got)
	if err != nil {
		return nil, err
	}
	if len(addrs) != 2 {
		return nil, fmt.Errorf("cluster %s: Service %s/%s made dual-stack has ClusterIPs %v, want one of each family", c.Name, namespace, name, addrs)
	}
	c.b.logf("    %s: Service %s/%s dual-stack: %s", c.Name, namespace, name, strings.Join(addrs, ", "))
	return addrs, nil
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

// ServiceAddr is a Service's primary ClusterIP with the workload port.
func (c *Cluster) ServiceAddr(ctx context.Context, namespace, name string) (string, error) {
	addrs, err := c.ServiceAddrs(ctx, namespace, name)
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}

// ServiceAddrs are a Service's ClusterIPs (one per family of a dual-stack
// Service, the primary first) with the workload port.
func (c *Cluster) ServiceAddrs(ctx context.Context, namespace, name string) ([]string, error) {
	svc, err := c.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: Service %s/%s: %w", c.Name, namespace, name, err)
	}
	return c.clusterIPs(svc)
}

// ServiceAddrOf is a Service's ClusterIP of family fam (FamilyIPv4 or
// FamilyIPv6) with the workload port ([ip6]:port for IPv6); an error when
// the Service has none of that family.
func (c *Cluster) ServiceAddrOf(ctx context.Context, namespace, name string, fam AddrFamily) (string, error) {
	if fam != FamilyIPv4 && fam != FamilyIPv6 {
		return "", fmt.Errorf("ServiceAddrOf: %v is not one family", fam)
	}
	addrs, err := c.ServiceAddrs(ctx, namespace, name)
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if netip.MustParseAddrPort(a).Addr().Is6() == (fam == FamilyIPv6) {
			return a, nil
		}
	}
	return "", fmt.Errorf("cluster %s: Service %s/%s has no %v ClusterIP: %v", c.Name, namespace, name, fam, addrs)
}

// clusterIPs are svc's ClusterIPs with the workload port, the primary
// first.
func (c *Cluster) clusterIPs(svc *corev1.Service) ([]string, error) {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []string
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: Service %s/%s has no ClusterIP: %w", c.Name, svc.Namespace, svc.Name, err)
		}
		out = append(out, netip.AddrPortFrom(ip, WorkloadPort).String())
	}
	return out, nil
}
