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
	ReasonPolicyDenied   Reason = 16 // no rule allows the flow
	ReasonPolicyDenyRule Reason = 17 // a deny rule matches
	ReasonUnsupportedL3  Reason = 18 // IPv6 in an enforced direction
	ReasonInvalidPacket  Reason = 19 // truncated or malformed header
	reasonMax                   = 32 // REASON_MAX
)

var reasonNames = map[Reason]string{
	ReasonPolicyAllow:    "policy-allow",
	ReasonCTEstablished:  "ct-established",
	ReasonCTReply:        "ct-reply",
	ReasonNotEnforced:    "not-enforced",
	ReasonNotIP:          "not-ip",
	ReasonPolicyDenied:   "policy-denied",
	ReasonPolicyDenyRule: "policy-deny-rule",
	ReasonUnsupportedL3:  "unsupported-l3",
	ReasonInvalidPacket:  "invalid-packet",
}

func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Event is one verdict of the datapath: every drop, and allowed new flows
// (sampled, see Options.TraceSample).
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
	Ifindex                  int
	Length                   uint32
}

// eventSize is sizeof(struct event).
const eventSize = 48

// decodeEvent decodes a struct event; boot is the wall time of ktime 0.
func decodeEvent(b []byte, boot time.Time) (Event, error) {
	if len(b) < eventSize {
		return Event{}, fmt.Errorf("event of %d bytes, want %d: %w", len(b), eventSize, ErrInvalidEvent)
	}
	le := binary.LittleEndian
	be := binary.BigEndian
	return Event{
		Time:        boot.Add(time.Duration(le.Uint64(b[0:8]))),
		SrcIdentity: le.Uint32(b[8:12]),
		DstIdentity: le.Uint32(b[12:16]),
		Src:         netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[16:20])), be.Uint16(b[24:26])),
		Dst:         netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[20:24])), be.Uint16(b[26:28])),
		EndpointID:  le.Uint16(b[28:30]),
		Proto:       b[30],
		Ingress:     b[31] == dirIngressValue,
		Verdict:     Verdict(b[32]),
		Reason:      Reason(b[33]),
		Ifindex:     int(le.Uint32(b[36:40])),
		Length:      le.Uint32(b[40:44]),
	}, nil
}

// dirIngressValue is DIR_INGRESS.
const dirIngressValue = 0
