package policy

import (
	"fmt"
	"net/netip"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Identity is a security identity as the engine sees it.
type Identity struct {
	ID     identity.NumericIdentity
	Labels identity.Labels
	// Prefix is set for CIDR identities only.
	Prefix netip.Prefix
}

// Endpoint is a local endpoint (a pod of this node).
type Endpoint struct {
	// Key is "namespace/name".
	Key       string
	Namespace string
	ID        identity.NumericIdentity
	// Labels are the labels of its identity (with namespace and cluster).
	Labels     identity.Labels
	NamedPorts []schema.NamedPort
}

// Protocol numbers.
const (
	ProtoAny  uint8 = 0
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// ParseProtocol maps "TCP", "UDP", "SCTP" and "ANY" (or "") to a protocol
// number; any other value is an error.
func ParseProtocol(s string, def uint8) (uint8, error) {
	switch s {
	case "":
		return def, nil
	case "TCP", "tcp":
		return ProtoTCP, nil
	case "UDP", "udp":
		return ProtoUDP, nil
	case "SCTP", "sctp":
		return ProtoSCTP, nil
	case "ANY", "any":
		return ProtoAny, nil
	}
	return 0, fmt.Errorf("protocol %q is not TCP, UDP, SCTP or ANY", s)
}

// PolicyKey names a policy: "k8s/<ns>/<name>" for a NetworkPolicy,
// "cmnp/<ns>/<name>" and "ccmnp/<name>" for the project's kinds.
type PolicyKey string

// Problem is a part of a policy that was left out, and why.
type Problem struct {
	// Field is where in the object ("spec.ingress[0].from[1].ipBlock").
	Field string `json:"field"`
	// Reason is a short CamelCase reason (InvalidSelector, UnknownEntity,
	// InvalidCIDR, InvalidPort, UnknownNamedPort).
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Field + ": " + p.Message }
