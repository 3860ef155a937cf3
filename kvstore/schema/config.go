package schema

import "encoding/json"

// ClusterConfig is the value at "<root>/cluster-config/<cluster>", with
// Cilium's clustermesh/types.CiliumClusterConfig JSON, e.g.
// {"id":1,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}.
// "capabilities" is always written: omitempty has no effect on a struct.
type ClusterConfig struct {
	ID           uint32                    `json:"id,omitempty"`
	Capabilities ClusterConfigCapabilities `json:"capabilities,omitempty"`
}

// ClusterConfigCapabilities are the features a cluster advertises.
type ClusterConfigCapabilities struct {
	// SyncedCanaries: the cluster writes "<root>/synced/<cluster>/<prefix>"
	// once each prefix has been fully written.
	SyncedCanaries bool `json:"syncedCanaries,omitempty"`
	// Cached: the data comes from a KVStoreMesh cache and lives under
	// "cilium/cache/..." rather than "cilium/state/...".
	Cached bool `json:"cached,omitempty"`
	// MaxConnectedClusters is 255 or 511; 0 means the legacy default 255.
	MaxConnectedClusters uint32 `json:"maxConnectedClusters,omitempty"`
	// ServiceExportsEnabled: MCS-API ServiceExports enabled; nil means the
	// cluster does not support them.
	ServiceExportsEnabled *bool `json:"serviceExportsEnabled,omitempty"`
	// EndpointSlicesExportMode says whether the cluster exports its global
	// Services as ClusterServices (under ServicesPrefix), as Cilium's
	// EndpointSlices, or both. Cilium v1.20 writes "services-and-endpointslices"
	// by default; a cluster that writes "endpointslices-only" exports no
	// ClusterService a reader of ServicesPrefix could use.
	EndpointSlicesExportMode EndpointSlicesExportMode `json:"endpointSlicesExportMode,omitempty"`
}

// EndpointSlicesExportMode is Cilium's CiliumClusterConfig capability of the
// same name.
type EndpointSlicesExportMode string

// The export modes Cilium v1.20 defines.
const (
	EndpointSlicesExportModeServicesOnly              EndpointSlicesExportMode = ""
	EndpointSlicesExportModeServicesAndEndpointSlices EndpointSlicesExportMode = "services-and-endpointslices"
	EndpointSlicesExportModeEndpointSlicesOnly        EndpointSlicesExportMode = "endpointslices-only"
)

// ExportsServices reports whether the cluster writes ClusterServices.
func (m EndpointSlicesExportMode) ExportsServices() bool {
	return m != EndpointSlicesExportModeEndpointSlicesOnly
}

// DefaultMaxConnectedClusters is assumed when MaxConnectedClusters is 0.
const DefaultMaxConnectedClusters = 255

// EffectiveMaxConnectedClusters returns MaxConnectedClusters, or 255 when
// it is unset.
func (c ClusterConfig) EffectiveMaxConnectedClusters() uint32 {
	if c.Capabilities.MaxConnectedClusters == 0 {
		return DefaultMaxConnectedClusters
	}
	return c.Capabilities.MaxConnectedClusters
}

// Marshal encodes the config as Cilium does.
func (c ClusterConfig) Marshal() ([]byte, error) { return json.Marshal(c) }

// DecodeClusterConfig is DefaultPaths().DecodeClusterConfig.
func DecodeClusterConfig(key string, data []byte) (ClusterConfig, error) {
	return DefaultPaths().DecodeClusterConfig(key, data)
}

// DecodeClusterConfig decodes and validates the cluster config stored at
// key: maxConnectedClusters must be 0 (legacy, meaning 255), 255 or 511, id
// must be 1..maxConnectedClusters, and endpointSlicesExportMode one of the
// modes Cilium defines (Cilium's ValidateRemoteConfig rejects others too).
func (p Paths) DecodeClusterConfig(key string, data []byte) (ClusterConfig, error) {
	if _, err := p.ParseClusterConfigKey(key); err != nil {
		return ClusterConfig{}, err
	}
	var c ClusterConfig
	if err := decodeObject(data, &c); err != nil {
		return ClusterConfig{}, &DecodeError{Key: key, Err: err}
	}
	switch m := c.Capabilities.MaxConnectedClusters; m {
	case 0, 255, 511:
	default:
		return ClusterConfig{}, valueErrorf(key, "maxConnectedClusters %d is not 255 or 511", m)
	}
	if max := c.EffectiveMaxConnectedClusters(); c.ID == 0 || c.ID > max {
		return ClusterConfig{}, valueErrorf(key, "cluster id %d is out of range 1..%d", c.ID, max)
	}
	switch m := c.Capabilities.EndpointSlicesExportMode; m {
	case EndpointSlicesExportModeServicesOnly, EndpointSlicesExportModeServicesAndEndpointSlices, EndpointSlicesExportModeEndpointSlicesOnly:
	default:
		return ClusterConfig{}, valueErrorf(key, "endpointSlicesExportMode %s is not one of %q, %q, %q", abbreviate([]byte(m)),
			EndpointSlicesExportModeServicesOnly, EndpointSlicesExportModeServicesAndEndpointSlices, EndpointSlicesExportModeEndpointSlicesOnly)
	}
	return c, nil
}
