package netpol

import (
	"fmt"
	"net/netip"
	"strings"
)

// The model of the upstream suite: namespaces x, y, z with pods a, b, c
// (labels pod=<name>), servers on ports 80 and 81 over TCP and UDP, their
// container ports named serve-<port>-<protocol> (SCTP too: the suite's
// policies name them).
var (
	Namespaces = []string{"x", "y", "z"}
	PodNames   = []string{"a", "b", "c"}
	Ports      = []uint16{80, 81}
	Protocols  = []string{"TCP", "UDP"}
)

// Pod is a pod of the model, "ns/pod" as the upstream suite writes pods.
type Pod string

// Namespace is the pod's namespace.
func (p Pod) Namespace() string { ns, _, _ := strings.Cut(string(p), "/"); return ns }

// Name is the pod's name within its namespace.
func (p Pod) Name() string { _, name, _ := strings.Cut(string(p), "/"); return name }

// Pods are the model's pods, namespace by namespace.
func Pods() []Pod {
	var out []Pod
	for _, ns := range Namespaces {
		for _, name := range PodNames {
			out = append(out, Pod(ns+"/"+name))
		}
	}
	return out
}

// PodLabels are the pod's labels in the model.
func PodLabels(p Pod) map[string]string { return map[string]string{"pod": p.Name()} }

// NamespaceLabels are the namespace's labels in the model (the suite's
// ns=<name>, and the name label Kubernetes sets on every namespace).
func NamespaceLabels(ns string) map[string]string {
	return map[string]string{"ns": ns, NsKey: ns}
}

// NamedPort is a container port of the model's pods.
type NamedPort struct {
	Name     string
	Port     uint16
	Protocol string // TCP, UDP, SCTP
}

// NamedPorts are the pods' container ports, named as upstream.
func NamedPorts() []NamedPort {
	var out []NamedPort
	for _, port := range Ports {
		for _, proto := range append(Protocols, "SCTP") {
			out = append(out, NamedPort{Name: fmt.Sprintf("serve-%d-%s", port, strings.ToLower(proto)), Port: port, Protocol: proto})
		}
	}
	return out
}

// Addrs gives the address of a pod of the model in one family (4 or 6):
// the world a scenario runs in.
type Addrs interface {
	Addr(p Pod, family int) netip.Addr
}

// HostCIDR is the pod's single-address prefix (/32, /128), as the suite
// writes it from the pod's IP.
func HostCIDR(w Addrs, p Pod, family int) string {
	a := w.Addr(p, family)
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// LargeCIDR is the suite's makeLargeCIDRForIP: the /4 holding the pod's
// address.
func LargeCIDR(w Addrs, p Pod, family int) string {
	return netip.PrefixFrom(w.Addr(p, family), 4).Masked().String()
}
