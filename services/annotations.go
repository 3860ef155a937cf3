package services

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Service annotations, exactly as Cilium spells them, and their legacy
// aliases.
const (
	AnnotationGlobal         = "service.cilium.io/global"
	AnnotationGlobalLegacy   = "io.cilium/global-service"
	AnnotationShared         = "service.cilium.io/shared"
	AnnotationSharedLegacy   = "io.cilium/shared-service"
	AnnotationAffinity       = "service.cilium.io/affinity"
	AnnotationAffinityLegacy = "io.cilium/service-affinity"
)

// AnnotationNamespaceGlobal on a Namespace says whether its global Services
// are exported ("true") or not ("false"); when absent, the caller's default
// applies. Cilium (1.18+) reads the same annotation the same way.
const AnnotationNamespaceGlobal = "clustermesh.cilium.io/global"

// ErrInvalidAnnotation is matched by errors.Is for every error about an
// annotation value: not an accepted value, or two spellings that disagree.
var ErrInvalidAnnotation = errors.New("invalid annotation")

// Affinity says which backends of a global Service new connections prefer.
type Affinity string

// Affinities. AffinityNone is the zero value, as in Cilium.
const (
	// AffinityNone uses local and remote backends alike.
	AffinityNone Affinity = ""
	// AffinityLocal uses remote backends only when no healthy local one is
	// left.
	AffinityLocal Affinity = "local"
	// AffinityRemote uses local backends only when no healthy remote one is
	// left.
	AffinityRemote Affinity = "remote"
)

// Annotations are the global-service settings of one Service. The zero value
// is a Service that is not global.
type Annotations struct {
	// Global is true when the Service merges backends of other clusters.
	Global bool
	// Shared is true when the Service is offered to other clusters; it
	// defaults to true on a global Service and is always false otherwise.
	Shared bool
	// Affinity is AffinityNone unless the Service is global.
	Affinity Affinity
}

// ShouldExport reports whether a Service with annotations a, in a Namespace
// that exports (see NamespaceExports) or not, is written to etcd.
func ShouldExport(a Annotations, nsExports bool) bool {
	return a.Global && a.Shared && nsExports
}

const (
	acceptBool     = `accepted values are "true" and "false" (any case)`
	acceptAffinity = `accepted values are "local", "remote", "none" and "" (any case)`
)

// ParseAnnotations reads the global-service annotations of svc. It returns
// every problem found, each naming the Service, the annotation, the value
// and the accepted values. An annotation with a problem falls back to the
// safe setting (global and shared false, i.e. not exported; affinity none),
// so the returned Annotations are usable even with errors. A nil svc is not
// global.
func ParseAnnotations(svc *corev1.Service) (Annotations, []error) {
	if svc == nil {
		return Annotations{}, nil
	}
	obj := "service " + svc.Namespace + "/" + svc.Name
	ann := svc.Annotations
	var errs []error

	// pairValue returns "" on error: global reads as false and affinity as
	// none; shared needs its own fallback since absent means true.
	global, _ := pairValue(obj, ann, AnnotationGlobal, AnnotationGlobalLegacy, acceptBool, parseBool, &errs)
	shared, ok := pairValue(obj, ann, AnnotationShared, AnnotationSharedLegacy, acceptBool, parseBool, &errs)
	switch {
	case !ok:
		shared = "false"
	case shared == "":
		shared = "true" // absent: a global Service is shared by default
	}
	affinity, _ := pairValue(obj, ann, AnnotationAffinity, AnnotationAffinityLegacy, acceptAffinity, parseAffinity, &errs)

	a := Annotations{Global: global == "true"}
	if a.Global {
		a.Shared = shared == "true"
		a.Affinity = Affinity(affinity)
	}
	return a, errs
}

// NamespaceExports reports whether global Services in ns are exported: the
// value of AnnotationNamespaceGlobal, or def when the annotation is absent.
// A bad value is an error and reads as false (not exported), as does a nil
// ns.
func NamespaceExports(ns *corev1.Namespace, def bool) (bool, error) {
	if ns == nil {
		return false, errors.New("namespace is nil: pass the Namespace object of the Service's namespace")
	}
	v, ok := ns.Annotations[AnnotationNamespaceGlobal]
	if !ok {
		return def, nil
	}
	b, ok := parseBool(v)
	if !ok {
		return false, fmt.Errorf("namespace %s: %w %s=%q: %s; fix or remove it",
			ns.Name, ErrInvalidAnnotation, AnnotationNamespaceGlobal, v, acceptBool)
	}
	return b == "true", nil
}

// parseBool normalises a boolean annotation value to "true" or "false".
func parseBool(v string) (string, bool) {
	switch strings.ToLower(v) {
	case "true":
		return "true", true
	case "false":
		return "false", true
	}
	return "", false
}

// parseAffinity normalises an affinity value; "none" and "" both mean
// AffinityNone.
func parseAffinity(v string) (string, bool) {
	switch l := strings.ToLower(v); l {
	case "", "none":
		return string(AffinityNone), true
	case string(AffinityLocal), string(AffinityRemote):
		return l, true
	}
	return "", false
}

// pairValue reads an annotation given in its current spelling key and its
// legacy spelling legacy. It returns the normalised value ("" when neither
// is present) and true, or false after appending an error to errs when a
// value is not accepted or the two spellings disagree.
func pairValue(obj string, ann map[string]string, key, legacy, accepted string,
	parse func(string) (string, bool), errs *[]error,
) (string, bool) {
	var vals [2]string
	var present [2]bool
	good := true
	for i, k := range [2]string{key, legacy} {
		raw, ok := ann[k]
		if !ok {
			continue
		}
		v, valid := parse(raw)
		if !valid {
			*errs = append(*errs, fmt.Errorf("%s: %w %s=%q: %s; fix or remove it",
				obj, ErrInvalidAnnotation, k, raw, accepted))
			good = false
			continue
		}
		vals[i], present[i] = v, true
	}
	if !good {
		return "", false
	}
	if present[0] && present[1] && vals[0] != vals[1] {
		*errs = append(*errs, fmt.Errorf("%s: %w: %s=%q and legacy %s=%q disagree; remove %s or give both the same value",
			obj, ErrInvalidAnnotation, key, ann[key], legacy, ann[legacy], legacy))
		return "", false
	}
	if present[0] {
		return vals[0], true
	}
	return vals[1], true
}
