package state

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
	"github.com/clustermesh/clustermesh/services"
)

// Tables of the local cluster only.
const (
	// TableEndpoints holds the pods of this node, keyed by (namespace,
	// name).
	TableEndpoints = "endpoints"
	// TableLocalServices holds the Services of the local cluster with
	// their local backends, keyed by (namespace, name).
	TableLocalServices = "localservices"
)

// Endpoint is a row of the endpoints table: a pod running on this node.
type Endpoint struct {
	Namespace, Name string
	// IPs are the pod's addresses (unmapped), sorted.
	IPs []netip.Addr
	// ID is the pod's security identity; identity.ReservedInit until the
	// identity of its labels is known.
	ID     identity.NumericIdentity
	Labels identity.Labels
	// NamedPorts are the pod's named container ports, for policies that
	// name ports.
	NamedPorts []schema.NamedPort
}

// LocalService is a row of the localservices table: a Service of the local
// cluster, its annotations and its local backends from its
// EndpointSlices (ready, serving and terminating ones alike: selecting is
// services.Merge's job).
type LocalService struct {
	Namespace, Name string
	Annotations     services.Annotations
	Frontends       []services.Frontend
	Backends        []services.Backend
}

// UpsertEndpoint sets the endpoint e.Namespace/e.Name.
func (w *WriteTxn) UpsertEndpoint(e Endpoint) error {
	if e.Namespace == "" || e.Name == "" {
		return fmt.Errorf("endpoint %q/%q has an empty namespace or name", e.Namespace, e.Name)
	}
	return upsertChanged(w, TableEndpoints, &e, e.Namespace, e.Name)
}

// DeleteEndpoint removes the endpoint namespace/name.
func (w *WriteTxn) DeleteEndpoint(namespace, name string) error {
	return w.deleteByID(TableEndpoints, namespace, name)
}

// UpsertLocalService sets the local Service s.Namespace/s.Name.
func (w *WriteTxn) UpsertLocalService(s LocalService) error {
	if s.Namespace == "" || s.Name == "" {
		return errors.New("local service with an empty namespace or name")
	}
	return upsertChanged(w, TableLocalServices, &s, s.Namespace, s.Name)
}

// DeleteLocalService removes the local Service namespace/name.
func (w *WriteTxn) DeleteLocalService(namespace, name string) error {
	return w.deleteByID(TableLocalServices, namespace, name)
}

// Endpoints returns the pods of this node, sorted by namespace and name.
func (sn *Snapshot) Endpoints() []Endpoint {
	return collect[Endpoint](sn.txn, TableEndpoints, IndexID)
}

// Endpoint returns the endpoint namespace/name.
func (sn *Snapshot) Endpoint(namespace, name string) (Endpoint, bool) {
	return byKey[Endpoint](sn, TableEndpoints, namespace, name)
}

// LocalService returns the local Service namespace/name.
func (sn *Snapshot) LocalService(namespace, name string) (LocalService, bool) {
	return byKey[LocalService](sn, TableLocalServices, namespace, name)
}

// LocalServices returns the local Services, sorted by namespace and name.
func (sn *Snapshot) LocalServices() []LocalService {
	return collect[LocalService](sn.txn, TableLocalServices, IndexID)
}
