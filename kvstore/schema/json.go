package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// decodeObject unmarshals data, which must be exactly one JSON object, into
// v. encoding/json itself rejects truncated input, trailing data, wrong field
// types and out-of-range numbers; this adds the "must be an object" rule
// (json.Unmarshal silently accepts null).
func decodeObject(data []byte, v any) error {
	rest := skipSpace(data)
	if len(rest) == 0 {
		return errors.New("value is empty, want a JSON object")
	}
	if rest[0] != '{' {
		return fmt.Errorf("value is %s, want a JSON object", describeJSON(rest))
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("cannot decode JSON object: %w", err)
	}
	return nil
}

func skipSpace(data []byte) []byte {
	for len(data) > 0 {
		switch data[0] {
		case ' ', '\t', '\r', '\n':
			data = data[1:]
		default:
			return data
		}
	}
	return data
}

// describeJSON names the kind of JSON value data starts with.
func describeJSON(data []byte) string {
	switch c := data[0]; {
	case c == 'n':
		return "null"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	default:
		return fmt.Sprintf("not JSON (starts with %q)", c)
	}
}

// ipAddr converts a decoded net.IP to an unmapped netip.Addr.
func ipAddr(ip net.IP) (netip.Addr, bool) {
	if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	return addr.Unmap(), ok
}

// checkOptionalIP checks that ip, when set, is a valid address of the
// requested family.
func checkOptionalIP(field string, ip net.IP, ipv6 bool) error {
	if ip == nil {
		return nil
	}
	addr, ok := ipAddr(ip)
	switch {
	case !ok:
		return fmt.Errorf("%s is not a valid IP address", field)
	case ipv6 && addr.Is4():
		return fmt.Errorf("%s %s is not an IPv6 address", field, addr)
	case !ipv6 && !addr.Is4():
		return fmt.Errorf("%s %s is not an IPv4 address", field, addr)
	}
	return nil
}

// checkAddrKey checks a map key that must be an IP address in canonical form.
func checkAddrKey(field, k string) error {
	if _, err := parseCanonicalAddr(k); err != nil {
		return fmt.Errorf("%s key: %w", field, err)
	}
	return nil
}

// validProtocols are the L4 protocols accepted in services and named ports,
// spelled as Cilium writes them.
var validProtocols = map[string]bool{"TCP": true, "UDP": true, "SCTP": true}

func checkProtocol(field, proto string) error {
	if !validProtocols[proto] {
		return fmt.Errorf("%s protocol %q is not one of TCP, UDP, SCTP", field, proto)
	}
	return nil
}
