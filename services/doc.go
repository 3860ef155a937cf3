// Package services decides which Kubernetes Services are global and turns a
// Service and its EndpointSlices into the schema.ClusterService that the
// clustermesh-apiserver exports to etcd, with Cilium ClusterMesh's
// user-facing vocabulary (annotations) and etcd JSON.
//
// # Rules
//
//   - Pure functions over Kubernetes API objects: no I/O, no clients, no
//     clocks, no global state. The caller reads the objects (informer caches)
//     and writes the result; this package only decides.
//   - Inputs are never modified and results never alias them: maps are
//     copied. No input panics, nil pointers included.
//   - Errors are lowercase, name the object ("service <namespace>/<name>",
//     "namespace <name>", the EndpointSlice and the field) and say what to
//     change. Sentinels are wrapped with %w: ErrInvalidAnnotation for a bad
//     annotation, ErrSkipped for a part of a Service that was left out of the
//     export, ErrNotExportable when the Service as a whole cannot be
//     exported.
//   - Problems are collected, not short-circuited: every error is returned,
//     and the value returned alongside is still safe to use (see each
//     function for the fallback).
//
// # Annotations
//
// Service annotations are Cilium's, in both spellings:
//
//	service.cilium.io/global    (legacy io.cilium/global-service)    "true" | "false"
//	service.cilium.io/shared    (legacy io.cilium/shared-service)    "true" | "false"
//	service.cilium.io/affinity  (legacy io.cilium/service-affinity)  "local" | "remote" | "none" | ""
//
// and on a Namespace:
//
//	clustermesh.cilium.io/global  "true" | "false"
//
// Values are matched case-insensitively, without trimming. Cilium reads any
// value other than "true" as false; we reject it instead, so that a typo
// ("yes", "1", " true") is reported instead of silently not exporting. When
// both spellings of an annotation are present they must agree. A Service is
// exported when it is global, shared (the default for a global Service) and
// its Namespace exports (see ShouldExport). Shared and affinity only mean
// something on a global Service: on a Service that is not global they read as
// false and none (as in Cilium), but their values are still checked.
//
// # Export
//
// BuildClusterService follows Cilium's clustermesh-apiserver: frontends are
// the Service's cluster IPs with the Service ports, backends are the
// addresses of the Service's EndpointSlices with the EndpointSlice ports. An
// endpoint is exported when it is ready (Ready nil or true, as the
// EndpointSlice API says) or serving (Serving true). A terminating endpoint
// that still passes its readiness probe is serving and therefore exported:
// the schema has no terminating flag, so importers cannot tell it apart and
// will keep using it until its pod stops serving and the EndpointSlice says
// so. Endpoints neither ready nor serving are left out silently (that is
// their normal state, not an error).
//
// # Import
//
// Merge is the importing side: it selects, for new connections, the backends
// of a local global Service among its own ready, non-terminating backends
// and those of the peers' ClusterServices of the same namespace/name that
// are still shared (see RemoteBackends), following the Service's affinity.
// Remote data is untrusted: unusable addresses and ports are skipped, and an
// address is used once (local first, then peers in cluster name order).
package services
