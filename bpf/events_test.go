package bpf

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// eventBytes lays out a struct event (c/tc_events.h) of family (4 or 6); with a
// frontend fe (address bytes), it is the Service frontend fe:80.
func eventBytes(family byte, saddr, daddr, fe []byte) []byte {
	flags := byte(1) // reply
	if fe != nil {
		flags |= 2 // service
	}
	b := []byte{
		0x00, 0xca, 0x9a, 0x3b, 0, 0, 0, 0, // ktime 1s
		0xe8, 0x03, 0, 0, // src identity 1000
		0xd0, 0x07, 0, 0, // dst identity 2000
	}
	b = append(b, append(saddr, make([]byte, 16-len(saddr))...)...)
	b = append(b, append(daddr, make([]byte, 16-len(daddr))...)...)
	b = append(b,
		0xc3, 0x50, 0x1f, 0x90, // sport 50000, dport 8080 (big endian)
		2, 0, 6, 0, // ep 2, TCP, ingress
		1, 16, family, 0x12, // dropped, policy-denied, family, TCP flags SYN|ACK
		7, 0, 0, 0, // ifindex
		60, 0, 0, 0, // length
		flags, 0, 0, 0, // flags; padding
	)
	if fe != nil { // struct event_service
		b = append(b, append(fe, make([]byte, 16-len(fe))...)...)
		b = append(b, 0, 80, 0, 0, 0, 0, 0, 0) // frontend port 80; padding
	}
	return b
}

func TestDecodeEvent(t *testing.T) {
	v6src, v6dst := netip.MustParseAddr("fd00::1:1"), netip.MustParseAddr("fd00::2:1")
	for _, tc := range []struct {
		name     string
		b        []byte
		src, dst string
		fe       string // "": none
	}{
		{"IPv4", eventBytes(4, []byte{10, 0, 1, 1}, []byte{10, 0, 2, 1}, nil), "10.0.1.1:50000", "10.0.2.1:8080", ""},
		{"IPv6", eventBytes(6, v6src.AsSlice(), v6dst.AsSlice(), nil), "[fd00::1:1]:50000", "[fd00::2:1]:8080", ""},
		{"IPv4 service", eventBytes(4, []byte{10, 0, 1, 1}, []byte{10, 0, 2, 1}, []byte{10, 96, 0, 10}), "10.0.1.1:50000", "10.0.2.1:8080", "10.96.0.10:80"},
		{"IPv6 service", eventBytes(6, v6src.AsSlice(), v6dst.AsSlice(), netip.MustParseAddr("fd00:96::a").AsSlice()), "[fd00::1:1]:50000", "[fd00::2:1]:8080", "[fd00:96::a]:80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if size := map[bool]int{false: eventSize, true: eventServiceSize}[tc.fe != ""]; len(tc.b) != size {
				t.Fatalf("test event of %d bytes, want %d", len(tc.b), size)
			}
			boot := time.Unix(100, 0)
			got, err := decodeEvent(tc.b, boot)
			if err != nil {
				t.Fatal(err)
			}
			want := Event{
				Time: time.Unix(101, 0), Verdict: Dropped, Reason: ReasonPolicyDenied, Ingress: true,
				EndpointID: 2, SrcIdentity: 1000, DstIdentity: 2000,
				Src: netip.MustParseAddrPort(tc.src), Dst: netip.MustParseAddrPort(tc.dst),
				Proto: ProtoTCP, TCPFlags: TCPFlagSYN | TCPFlagACK, Reply: true, Ifindex: 7, Length: 60,
			}
			if tc.fe != "" {
				want.Frontend = netip.MustParseAddrPort(tc.fe)
			}
			if !got.Time.Equal(want.Time) {
				t.Errorf("time %v, want %v", got.Time, want.Time)
			}
			got.Time = want.Time
			if got != want {
				t.Errorf("\n got %+v\nwant %+v", got, want)
			}
			if got.Reason.String() != "policy-denied" || got.Verdict.String() != "dropped" {
				t.Errorf("names %s %s", got.Reason, got.Verdict)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(make([]byte, eventSize))
	f.Add([]byte{1, 2, 3})
	f.Add(eventBytes(4, []byte{10, 0, 1, 1}, []byte{10, 0, 2, 1}, []byte{10, 96, 0, 10}))
	f.Add(eventBytes(4, []byte{10, 0, 1, 1}, []byte{10, 0, 2, 1}, []byte{10, 96, 0, 10})[:eventSize]) // flag without the frontend
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeEvent(b, time.Time{})
		short := len(b) < eventSize || b[68]&eventFlagService != 0 && len(b) < eventServiceSize
		if (err != nil) != short {
			t.Fatalf("len %d: err %v", len(b), err)
		}
		if ev.Frontend.IsValid() != (!short && b[68]&eventFlagService != 0) {
			t.Fatalf("len %d, flags %#x: frontend %v", len(b), b[68], ev.Frontend)
		}
		if err != nil && !errors.Is(err, ErrInvalidEvent) {
			t.Fatalf("len %d: err %v, want ErrInvalidEvent", len(b), err)
		}
		_ = ev.Reason.String()
	})
}
