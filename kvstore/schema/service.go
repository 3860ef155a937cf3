package schema

import (
	"encoding/json"
	"fmt"
	"sort"
)

// MaxClusterID is the largest cluster ID Cilium supports (with
// maxConnectedClusters 511).
const MaxClusterID = 511

// ClusterService is the value at "<root>/state/services/v1/<cluster>/<ns>/<name>":
// a service shared with other clusters, with Cilium's
// clustermesh/store.ClusterService JSON.
type ClusterService struct {
	Cluster   string                       `json:"cluster"`
	Namespace string                       `json:"namespace"`
	Name      string                       `json:"name"`
	Frontends map[string]PortConfiguration `json:"frontends"`           // by frontend IP
	Backends  map[string]PortConfiguration `json:"backends"`            // by backend IP
	Hostnames map[string]string            `json:"hostnames,omitempty"` // by backend IP
	Zones     map[string]BackendZone       `json:"zones,omitempty"`     // by backend IP
	Labels    map[string]string            `json:"labels"`
	Selector  map[string]string            `json:"selector"`
	// IncludeExternal is true when endpoints of other clusters are included.
	IncludeExternal bool `json:"includeExternal"`
	// Shared is true when the service is exposed to other clusters.
	Shared    bool   `json:"shared"`
	ClusterID uint32 `json:"clusterID"`
}

// PortConfiguration maps a port name ("" for an unnamed port) to its port.
type PortConfiguration map[string]*L4Addr

// L4Addr is a protocol and port (Cilium's loadbalancer.L4Addr, no JSON
// tags): {"Protocol":"TCP","Port":80}.
type L4Addr struct {
	Protocol string
	Port     uint16
}

// L4 protocols as Cilium spells them.
const (
	ProtocolTCP  = "TCP"
	ProtocolUDP  = "UDP"
	ProtocolSCTP = "SCTP"
)

// BackendZone is the topology-aware-routing zone information of a backend
// (Cilium's clustermesh/store.BackendZone).
type BackendZone struct {
	Zone     string    `json:"zone"`
	ForZones []ForZone `json:"forZones"`
}

// ForZone names a zone that should consume a backend.
type ForZone struct {
	Name string `json:"name"`
}

// Marshal encodes the service as Cilium does.
func (s ClusterService) Marshal() ([]byte, error) { return json.Marshal(s) }

// DecodeClusterService is DefaultPaths().DecodeClusterService.
func DecodeClusterService(key string, data []byte) (ClusterService, error) {
	return DefaultPaths().DecodeClusterService(key, data)
}

// DecodeClusterService decodes and validates the service stored at key:
// cluster, namespace and name must equal the key's segments, clusterID must
// be 1..MaxClusterID, every frontend, backend, hostname and zone map key must
// be an IP address in canonical form, and every port must be non-null with
// port 1..65535 and protocol TCP, UDP or SCTP ("ANY" and "NONE" are
// rejected: Kubernetes services never carry them).
func (p Paths) DecodeClusterService(key string, data []byte) (ClusterService, error) {
	cluster, ns, name, err := p.ParseServiceKey(key)
	if err != nil {
		return ClusterService{}, err
	}
	var s ClusterService
	if err := decodeObject(data, &s); err != nil {
		return ClusterService{}, &DecodeError{Key: key, Err: err}
	}
	if err := s.validate(cluster, ns, name); err != nil {
		return ClusterService{}, &DecodeError{Key: key, Err: err}
	}
	if len(s.Hostnames) == 0 {
		s.Hostnames = nil
	}
	if len(s.Zones) == 0 {
		s.Zones = nil
	}
	return s, nil
}

func (s *ClusterService) validate(cluster, ns, name string) error {
	switch {
	case s.Cluster != cluster:
		return fmt.Errorf("service cluster %q does not match the key's cluster %q", s.Cluster, cluster)
	case s.Namespace != ns:
		return fmt.Errorf("service namespace %q does not match the key's namespace %q", s.Namespace, ns)
	case s.Name != name:
		return fmt.Errorf("service name %q does not match the key's name %q", s.Name, name)
	case s.ClusterID == 0 || s.ClusterID > MaxClusterID:
		return fmt.Errorf("service clusterID %d is out of range 1..%d", s.ClusterID, MaxClusterID)
	}
	if err := checkPortMap("frontend", s.Frontends); err != nil {
		return err
	}
	if err := checkPortMap("backend", s.Backends); err != nil {
		return err
	}
	for _, ip := range sortedKeys(s.Hostnames) {
		if err := checkAddrKey("hostnames", ip); err != nil {
			return err
		}
	}
	for _, ip := range sortedKeys(s.Zones) {
		if err := checkAddrKey("zones", ip); err != nil {
			return err
		}
	}
	return nil
}

// checkPortMap validates frontends or backends. Keys are visited in sorted
// order so that the reported error is deterministic.
func checkPortMap(what string, m map[string]PortConfiguration) error {
	for _, ip := range sortedKeys(m) {
		if err := checkAddrKey(what+"s", ip); err != nil {
			return err
		}
		ports := m[ip]
		for _, portName := range sortedKeys(ports) {
			field := fmt.Sprintf("%s %s port %q", what, ip, portName)
			l4 := ports[portName]
			if l4 == nil {
				return fmt.Errorf("%s is null", field)
			}
			if l4.Port == 0 {
				return fmt.Errorf("%s has port 0", field)
			}
			if err := checkProtocol(field, l4.Protocol); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
