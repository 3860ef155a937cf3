package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// Verdict is what the datapath did with a packet.
type Verdict uint8

// Verdicts.
const (
	Allowed Verdict = 0
	Dropped Verdict = 1
)

func (v Verdict) String() string {
	switch v {
	case Allowed:
		return "allowed"
	case Dropped:
		return "dropped"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Reason says why a packet got its verdict. The values are those of c/tc.c.
type Reason uint8

// Reasons.
const (
	ReasonPolicyAllow    Reason = 1  // new flow allowed by a rule
	ReasonCTEstablished  Reason = 2  // packet of a tracked flow
	ReasonCTReply        Reason = 3  // reply of a tracked flow
	ReasonNotEnforced    Reason = 4  // new flow, direction not enforced
	ReasonNotIP          Reason = 5  // ARP and other non-IP, passed
	ReasonICMPv6Link     Reason = 6  // ICMPv6 neighbour discovery and MLD, passed
	ReasonPolicyDenied   Reason = 16 // no rule allows the flow
	ReasonPolicyDenyRule Reason = 17 // a deny rule matches
	// 18 was unsupported-l3 (IPv6 in an enforced direction): no longer
	// emitted, IPv6 is enforced like IPv4.
	ReasonInvalidPacket Reason = 19 // truncated or malformed header
	ReasonExtHeaders    Reason = 20 // more IPv6 extension headers than the datapath parses
	reasonMax                  = 32 // REASON_MAX
)

var reasonNames = map[Reason]string{
	ReasonPolicyAllow:    "policy-allow",
	ReasonCTEstablished:  "ct-established",
	ReasonCTReply:        "ct-reply",
	ReasonNotEnforced:    "not-enforced",
	ReasonNotIP:          "not-ip",
	ReasonICMPv6Link:     "icmpv6-link",
	ReasonPolicyDenied:   "policy-denied",
	ReasonPolicyDenyRule: "policy-deny-rule",
	ReasonInvalidPacket:  "invalid-packet",
	ReasonExtHeaders:     "ipv6-ext-headers",
}

func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Event is one verdict of the datapath: every drop, allowed new flows and
// the first reply of each (sampled, see Options.TraceSample).
type Event struct {
	// Time is when the kernel emitted the event.
	Time    time.Time
	Verdict Verdict
	Reason  Reason
	// Ingress is true for traffic towards the endpoint.
	Ingress    bool
	EndpointID uint16
	// SrcIdentity and DstIdentity are the identities of the packet's
	// source and destination (the endpoint's own and the peer's).
	SrcIdentity, DstIdentity uint32
	Src, Dst                 netip.AddrPort
	Proto                    uint8
	// TCPFlags are the flags of a TCP packet's header (TCPFlagSYN, ...);
	// 0 for other protocols.
	TCPFlags uint8
	// Reply is true for the first reply of a tracked flow (an allowed
	// event of reason ReasonCTReply).
	Reply   bool
	Ifindex int
	Length  uint32
	// Frontend is the Service frontend (ClusterIP:port) that socket load
	// balancing translated into Dst, the backend it chose; the zero
	// AddrPort when the packet was not translated or the datapath could not
	// tell. Only events at the client's own endpoint in the egress
	// direction carry it: the packet's socket is known only there.
	Frontend netip.AddrPort
}

// TCP header flags, as in Event.TCPFlags.
const (
	TCPFlagFIN uint8 = 0x01
	TCPFlagSYN uint8 = 0x02
	TCPFlagRST uint8 = 0x04
	TCPFlagPSH uint8 = 0x08
	TCPFlagACK uint8 = 0x10
	TCPFlagURG uint8 = 0x20
	TCPFlagECE uint8 = 0x40
	TCPFlagCWR uint8 = 0x80
)

// eventFlagReply is EVENT_FLAG_REPLY, eventFlagService EVENT_FLAG_SERVICE.
const (
	eventFlagReply   = 1
	eventFlagService = 2
)

// eventSize is sizeof(struct event), eventServiceSize sizeof(struct
// event_service) (an event with eventFlagService).
const (
	eventSize        = 72
	eventServiceSize = 96
)

// familyIPv6Value is AF_INET6 of c/common.h, struct event's family.
const familyIPv6Value = 6

// decodeEvent decodes a struct event; boot is the wall time of ktime 0.
func decodeEvent(b []byte, boot time.Time) (Event, error) {
	if len(b) < eventSize {
		return Event{}, fmt.Errorf("event of %d bytes, want %d: %w", len(b), eventSize, ErrInvalidEvent)
	}
	le := binary.LittleEndian
	be := binary.BigEndian
	addr := func(raw []byte) netip.Addr {
		if b[58] == familyIPv6Value {
			return netip.AddrFrom16([16]byte(raw[:16]))
		}
		return netip.AddrFrom4([4]byte(raw[:4]))
	}
	var fe netip.AddrPort
	if b[68]&eventFlagService != 0 {
		if len(b) < eventServiceSize {
			return Event{}, fmt.Errorf("event with a service frontend of %d bytes, want %d: %w", len(b), eventServiceSize, ErrInvalidEvent)
		}
		fe = netip.AddrPortFrom(addr(b[72:88]), be.Uint16(b[88:90]))
	}
	return Event{
		Frontend:    fe,
		Time:        boot.Add(time.Duration(le.Uint64(b[0:8]))),
		SrcIdentity: le.Uint32(b[8:12]),
		DstIdentity: le.Uint32(b[12:16]),
		Src:         netip.AddrPortFrom(addr(b[16:32]), be.Uint16(b[48:50])),
		Dst:         netip.AddrPortFrom(addr(b[32:48]), be.Uint16(b[50:52])),
		EndpointID:  le.Uint16(b[52:54]),
		Proto:       b[54],
		Ingress:     b[55] == dirIngressValue,
		Verdict:     Verdict(b[56]),
		Reason:      Reason(b[57]),
		TCPFlags:    b[59],
		Ifindex:     int(le.Uint32(b[60:64])),
		Length:      le.Uint32(b[64:68]),
		Reply:       b[68]&eventFlagReply != 0,
	}, nil
}

// dirIngressValue is DIR_INGRESS.
const dirIngressValue = 0
