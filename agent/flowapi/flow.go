package flowapi

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Flow is one verdict of the datapath on one packet at one endpoint: the
// first packet of a connection (forwarded or dropped), every dropped
// packet, and the first reply of a reported connection.
type Flow struct {
	// Time is when the kernel decided.
	Time time.Time `json:"time"`
	// Node is the node whose agent recorded the flow.
	Node string `json:"node"`
	// Direction is DirectionIngress (towards the endpoint) or
	// DirectionEgress (from it).
	Direction string `json:"direction"`
	// Verdict is VerdictForwarded or VerdictDropped.
	Verdict string `json:"verdict"`
	// Reason is the datapath's reason ("policy-allow", "policy-denied",
	// "ct-reply", ...; bpf.Reason).
	Reason   string   `json:"reason"`
	Protocol Protocol `json:"protocol"`
	// TCPFlags are the flags of a TCP packet's header.
	TCPFlags TCPFlags `json:"tcpFlags,omitempty"`
	// IsReply is true for the reply of a tracked connection.
	IsReply bool `json:"isReply"`
	// EndpointID is the datapath ID of the endpoint (pod) of this node
	// where the verdict was taken.
	EndpointID uint16 `json:"endpointID"`
	// Bytes is the length of the packet.
	Bytes uint32   `json:"bytes"`
	Src   Endpoint `json:"src"`
	Dst   Endpoint `json:"dst"`
	// Service is set when socket load balancing translated the flow's
	// destination: the client connected to a Service frontend and Dst is
	// the backend the datapath chose. Only flows at the client's own
	// endpoint, egress, carry it. It may be shared between flows: readers
	// must not modify it.
	Service *ServiceTranslation `json:"service,omitempty"`
}

// ServiceTranslation is what socket load balancing did with a flow: the
// Service frontend the client addressed, and the backend chosen for it.
type ServiceTranslation struct {
	// Namespace and Name are the Service's, as the agent's state knows the
	// frontend ("" when it does not: a Service deleted since, say).
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// Frontend is the address the client connected to (a ClusterIP:port).
	Frontend netip.AddrPort `json:"frontend"`
	// Backend is the backend chosen (the flow's destination), and
	// BackendCluster the cluster it is in (when the agent knows it).
	Backend        netip.AddrPort `json:"backend"`
	BackendCluster string         `json:"backendCluster,omitempty"`
}

// Ref returns "namespace/name", or "" when the Service is not known (or s
// is nil).
func (s *ServiceTranslation) Ref() string {
	if s == nil || s.Name == "" {
		return ""
	}
	return s.Namespace + "/" + s.Name
}

// Directions.
const (
	DirectionIngress = "ingress"
	DirectionEgress  = "egress"
)

// Verdicts.
const (
	VerdictForwarded = "forwarded"
	VerdictDropped   = "dropped"
)

// Endpoint is one end of a flow, resolved by the agent from its state at
// the time of the flow: a pod (of any cluster of the mesh), a node, a CIDR
// of a policy, or the world.
type Endpoint struct {
	IP   netip.Addr `json:"ip"`
	Port uint16     `json:"port"`
	// Identity is the security identity the datapath gave the address.
	Identity uint32 `json:"identity"`
	// Cluster is the cluster of the pod, the node or the identity.
	Cluster   string `json:"cluster,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	// Node is the node whose address this is (not the pod's node).
	Node string `json:"node,omitempty"`
	// Reserved names a reserved identity: "world", "host", "remote-node",
	// "init", ...
	Reserved string `json:"reserved,omitempty"`
	// CIDR is the prefix of a policy's CIDR identity holding the address.
	CIDR string `json:"cidr,omitempty"`
	// Labels are the identity's labels, "source:key=value", sorted.
	Labels []string `json:"labels,omitempty"`
}

// Protocol is an IP protocol number; its JSON form is its name ("TCP",
// "UDP", "ICMP", "ICMPv6", "SCTP") or, for another protocol, the number.
type Protocol uint8

// Protocols with a name.
const (
	ProtoICMP   Protocol = 1
	ProtoTCP    Protocol = 6
	ProtoUDP    Protocol = 17
	ProtoICMPv6 Protocol = 58
	ProtoSCTP   Protocol = 132
)

var protoNames = map[Protocol]string{ProtoICMP: "ICMP", ProtoTCP: "TCP", ProtoUDP: "UDP", ProtoICMPv6: "ICMPv6", ProtoSCTP: "SCTP"}

func (p Protocol) String() string {
	if s, ok := protoNames[p]; ok {
		return s
	}
	return strconv.Itoa(int(p))
}

// ParseProtocol parses a protocol name (any case) or number.
func ParseProtocol(s string) (Protocol, error) {
	for p, name := range protoNames {
		if strings.EqualFold(s, name) {
			return p, nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("protocol %q: want tcp, udp, icmp, icmpv6, sctp or a protocol number (0-255)", s)
	}
	return Protocol(n), nil
}

// MarshalText implements encoding.TextMarshaler.
func (p Protocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Protocol) UnmarshalText(b []byte) error {
	v, err := ParseProtocol(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// TCPFlags are the flags of a TCP header (bit 0 FIN ... bit 7 CWR); the JSON
// form is the list of their names, e.g. ["SYN","ACK"].
type TCPFlags uint8

// TCP flags.
const (
	FIN TCPFlags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// tcpFlagNames are in the order String prints them: SYN first, as tcpdump
// and Hubble read.
var tcpFlagNames = []struct {
	f    TCPFlags
	name string
}{{SYN, "SYN"}, {FIN, "FIN"}, {RST, "RST"}, {PSH, "PSH"}, {ACK, "ACK"}, {URG, "URG"}, {ECE, "ECE"}, {CWR, "CWR"}}

// Names returns the names of the flags set.
func (f TCPFlags) Names() []string {
	out := []string{}
	for _, n := range tcpFlagNames {
		if f&n.f != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// String returns the names joined by "|", e.g. "SYN|ACK"; "" for none.
func (f TCPFlags) String() string { return strings.Join(f.Names(), "|") }

// MarshalJSON implements json.Marshaler.
func (f TCPFlags) MarshalJSON() ([]byte, error) { return json.Marshal(f.Names()) }

// UnmarshalJSON implements json.Unmarshaler; unknown names are an error.
func (f *TCPFlags) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return fmt.Errorf("tcp flags: %w", err)
	}
	var v TCPFlags
next:
	for _, s := range names {
		for _, n := range tcpFlagNames {
			if s == n.name {
				v |= n.f
				continue next
			}
		}
		return fmt.Errorf("tcp flag %q: want one of SYN, FIN, RST, PSH, ACK, URG, ECE, CWR", s)
	}
	*f = v
	return nil
}
