package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// IPEntry is the value at "<root>/state/ip/v1/default/<ip>" (or <ip>/<len>):
// the security identity of an IP, with Cilium's identity.IPIdentityPair JSON.
// Mask is nil for a host entry; when set the key is "<ip>/<len>".
type IPEntry struct {
	IP                net.IP      `json:"IP"`
	Mask              net.IPMask  `json:"Mask"`
	HostIP            net.IP      `json:"HostIP"`
	ID                uint32      `json:"ID"`
	Key               uint8       `json:"Key"`
	Metadata          string      `json:"Metadata"`
	K8sNamespace      string      `json:"K8sNamespace,omitempty"`
	K8sPodName        string      `json:"K8sPodName,omitempty"`
	K8sServiceAccount string      `json:"K8sServiceAccount,omitempty"`
	NamedPorts        []NamedPort `json:"NamedPorts,omitempty"`
}

// NamedPort maps a container port name to a port and protocol (Cilium's
// identity.NamedPort; its JSON names are capitalised).
type NamedPort struct {
	Name     string `json:"Name"`
	Port     uint16 `json:"Port"`
	Protocol string `json:"Protocol"`
}

// Marshal encodes the entry as Cilium does.
func (e IPEntry) Marshal() ([]byte, error) { return json.Marshal(e) }

// Prefix returns the entry's prefix: the IP with Mask's length, or the
// single-address prefix of a host entry. IPv4 addresses are unmapped.
func (e IPEntry) Prefix() (netip.Prefix, error) {
	addr, ok := ipAddr(e.IP)
	if !ok {
		return netip.Prefix{}, errors.New("entry has no valid IP")
	}
	if e.Mask == nil {
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	if want := addr.BitLen() / 8; len(e.Mask) != want {
		return netip.Prefix{}, fmt.Errorf("entry mask has %d bytes, want %d for %s", len(e.Mask), want, addr)
	}
	ones, bits := e.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, fmt.Errorf("entry mask %s is not a prefix mask", e.Mask)
	}
	return netip.PrefixFrom(addr, ones), nil
}

// DecodeIPEntry is DefaultPaths().DecodeIPEntry.
func DecodeIPEntry(key string, data []byte) (IPEntry, error) {
	return DefaultPaths().DecodeIPEntry(key, data)
}

// DecodeIPEntry decodes and validates the ipcache entry stored at key. The
// entry's IP (and Mask length, if any) must equal the key's, host entries
// must have no Mask and prefix entries must have one, ID must be non-zero
// and at most MaxIdentity, and named ports must have a name, a non-zero
// port and protocol TCP, UDP or SCTP.
func (p Paths) DecodeIPEntry(key string, data []byte) (IPEntry, error) {
	keyPrefix, keyIsCIDR, err := p.parseIPKey(key)
	if err != nil {
		return IPEntry{}, err
	}
	var e IPEntry
	if !decodeIPEntryFast(data, &e) {
		e = IPEntry{}
		if err := decodeObject(data, &e); err != nil {
			return IPEntry{}, &DecodeError{Key: key, Err: err}
		}
	}
	if err := e.validate(keyPrefix, keyIsCIDR); err != nil {
		return IPEntry{}, &DecodeError{Key: key, Err: err}
	}
	if len(e.NamedPorts) == 0 {
		e.NamedPorts = nil
	}
	return e, nil
}

func (e *IPEntry) validate(keyPrefix netip.Prefix, keyIsCIDR bool) error {
	if e.IP == nil {
		return errors.New("entry has no IP")
	}
	prefix, err := e.Prefix()
	if err != nil {
		return err
	}
	switch {
	case prefix.Addr() != keyPrefix.Addr():
		return fmt.Errorf("entry IP %s does not match the key's address %s", prefix.Addr(), keyPrefix.Addr())
	case e.Mask == nil && keyIsCIDR:
		return fmt.Errorf("entry has no Mask but the key names prefix %s", keyPrefix)
	case e.Mask != nil && !keyIsCIDR:
		return fmt.Errorf("entry has Mask /%d but the key names a single address", prefix.Bits())
	case prefix.Bits() != keyPrefix.Bits():
		return fmt.Errorf("entry prefix %s does not match the key's prefix %s", prefix, keyPrefix)
	}
	if _, ok := ipAddr(e.HostIP); e.HostIP != nil && !ok {
		return errors.New("entry HostIP is not a valid IP address")
	}
	switch {
	case e.ID == 0:
		return errors.New("entry identity ID is 0")
	case e.ID > MaxIdentity:
		return fmt.Errorf("entry identity ID %d is above %d (not a global identity)", e.ID, MaxIdentity)
	}
	for i, np := range e.NamedPorts {
		field := fmt.Sprintf("named port %d", i)
		switch {
		case np.Name == "":
			return fmt.Errorf("%s has no name", field)
		case np.Port == 0:
			return fmt.Errorf("%s %q has port 0", field, np.Name)
		}
		if err := checkProtocol(fmt.Sprintf("%s %q", field, np.Name), np.Protocol); err != nil {
			return err
		}
	}
	return nil
}
