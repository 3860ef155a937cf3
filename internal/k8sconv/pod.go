package k8sconv

import (
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// NamedPorts lists the pod's named container ports, sorted by name.
func NamedPorts(pod *corev1.Pod) []schema.NamedPort {
	var out []schema.NamedPort
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.Name == "" || p.ContainerPort <= 0 || p.ContainerPort > 65535 {
					continue
				}
				proto := string(p.Protocol)
				if proto == "" {
					proto = string(corev1.ProtocolTCP)
				}
				np := schema.NamedPort{Name: p.Name, Port: uint16(p.ContainerPort), Protocol: proto}
				if !slices.Contains(out, np) {
					out = append(out, np)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
