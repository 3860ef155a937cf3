package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// EndpointConfig is how the datapath treats one endpoint.
type EndpointConfig struct {
	// Identity is the endpoint's own security identity (reported in events).
	Identity uint32
	// EnforceIngress and EnforceEgress say whether the endpoint's policy
	// applies in that direction; a direction not enforced allows everything
	// (and still tracks connections, so replies of its flows pass the other
	// direction).
	EnforceIngress, EnforceEgress bool
}

// epConfigValue mirrors struct ep_config.
type epConfigValue struct {
	Identity       uint32
	EnforceIngress uint8
	EnforceEgress  uint8
	Pad            uint16
}

// EndpointConfigs maps endpoint IDs to their configuration. Traffic of an
// attached interface whose endpoint has no configuration passes untouched.
type EndpointConfigs struct {
	m *ebpf.Map
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Update sets the configuration of endpoint id.
func (c *EndpointConfigs) Update(id uint16, cfg EndpointConfig) error {
	v := epConfigValue{Identity: cfg.Identity, EnforceIngress: b2u(cfg.EnforceIngress), EnforceEgress: b2u(cfg.EnforceEgress)}
	if err := c.m.Update(id, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("endpoint config update %d: %w", id, err)
	}
	return nil
}

// Delete removes the configuration of endpoint id; absent is not an error.
func (c *EndpointConfigs) Delete(id uint16) error {
	if err := c.m.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("endpoint config delete %d: %w", id, err)
	}
	return nil
}

// Get returns the configuration of endpoint id as the kernel holds it, and
// false if it has none.
func (c *EndpointConfigs) Get(id uint16) (EndpointConfig, bool, error) {
	var v epConfigValue
	if err := c.m.Lookup(id, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return EndpointConfig{}, false, nil
		}
		return EndpointConfig{}, false, fmt.Errorf("endpoint config lookup %d: %w", id, err)
	}
	return EndpointConfig{Identity: v.Identity, EnforceIngress: v.EnforceIngress != 0, EnforceEgress: v.EnforceEgress != 0}, true, nil
}

// List returns every endpoint configuration in the kernel.
func (c *EndpointConfigs) List() (map[uint16]EndpointConfig, error) {
	out := map[uint16]EndpointConfig{}
	var (
		k uint16
		v epConfigValue
	)
	it := c.m.Iterate()
	for it.Next(&k, &v) {
		out[k] = EndpointConfig{Identity: v.Identity, EnforceIngress: v.EnforceIngress != 0, EnforceEgress: v.EnforceEgress != 0}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("endpoint config list: %w", err)
	}
	return out, nil
}
