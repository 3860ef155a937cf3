package flowapi

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/clustermesh/clustermesh/identity"
)

// Filter selects flows. Every field that is set must match (AND); within a
// field, any of its values may (OR). The zero Filter selects every flow.
type Filter struct {
	// FromPod and ToPod match the source and the destination pod.
	FromPod, ToPod []PodRef
	// FromCluster and ToCluster match the source and destination cluster.
	FromCluster, ToCluster []string
	// Namespace matches the namespace of either end.
	Namespace []string
	// Label matches a label of either end's identity.
	Label []LabelMatch
	// Identity matches the identity of either end.
	Identity []uint32
	// Verdict is VerdictForwarded or VerdictDropped.
	Verdict []string
	// Protocol matches the IP protocol.
	Protocol []Protocol
	// Port matches the port of either end.
	Port []uint16
	// Service matches the Service a flow's destination was translated
	// from (ServiceTranslation), namespace/name.
	Service []ServiceRef
}

// ServiceRef names a Service: namespace/name.
type ServiceRef struct{ Namespace, Name string }

func (s ServiceRef) String() string { return s.Namespace + "/" + s.Name }

// PodRef names a pod: namespace/name.
type PodRef struct{ Namespace, Name string }

func (p PodRef) String() string { return p.Namespace + "/" + p.Name }

// LabelMatch matches a label: Source "" (written without one) matches any
// source; without Value set (written without "="), any value of Key.
type LabelMatch struct {
	Source, Key, Value string
	HasValue           bool
}

func (l LabelMatch) String() string {
	s := l.Key
	if l.Source != "" {
		s = l.Source + ":" + s
	}
	if l.HasValue {
		s += "=" + l.Value
	}
	return s
}

// Filter parameters, the same in the query of GET /v1/flows and as flags
// of `clustermesh observe` (with "--").
const (
	ParamFromPod     = "from-pod"
	ParamToPod       = "to-pod"
	ParamFromCluster = "from-cluster"
	ParamToCluster   = "to-cluster"
	ParamNamespace   = "namespace"
	ParamLabel       = "label"
	ParamIdentity    = "identity"
	ParamVerdict     = "verdict"
	ParamProtocol    = "protocol"
	ParamPort        = "port"
	ParamService     = "service"
)

// ParamError is a parameter whose value does not parse.
type ParamError struct {
	Param, Value string
	// Want says what the value should be.
	Want string
}

func (e *ParamError) Error() string { return fmt.Sprintf("%s=%q: %s", e.Param, e.Value, e.Want) }

// FlagError returns the error as the CLI's flag --<param>.
func (e *ParamError) FlagError() string { return fmt.Sprintf("--%s %q: %s", e.Param, e.Value, e.Want) }

// parsers of each parameter, which add a value to f.
var filterParams = []struct {
	name  string
	parse func(f *Filter, v string) string // "" or what v should be
}{
	{ParamFromPod, func(f *Filter, v string) string { return addPod(&f.FromPod, v) }},
	{ParamToPod, func(f *Filter, v string) string { return addPod(&f.ToPod, v) }},
	{ParamFromCluster, func(f *Filter, v string) string { return addCluster(&f.FromCluster, v) }},
	{ParamToCluster, func(f *Filter, v string) string { return addCluster(&f.ToCluster, v) }},
	{ParamNamespace, func(f *Filter, v string) string {
		if v == "" || strings.ContainsAny(v, "/ ") {
			return "want a namespace name"
		}
		f.Namespace = append(f.Namespace, v)
		return ""
	}},
	{ParamLabel, addLabel},
	{ParamIdentity, func(f *Filter, v string) string {
		if id, ok := identity.LookupReservedByName(v); ok {
			f.Identity = append(f.Identity, uint32(id))
			return ""
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return "want a numeric identity or a reserved identity's name (world, host, remote-node, ...)"
		}
		f.Identity = append(f.Identity, uint32(n))
		return ""
	}},
	{ParamVerdict, func(f *Filter, v string) string {
		v = strings.ToLower(v)
		if v != VerdictForwarded && v != VerdictDropped {
			return "want forwarded or dropped"
		}
		f.Verdict = append(f.Verdict, v)
		return ""
	}},
	{ParamProtocol, func(f *Filter, v string) string {
		p, err := ParseProtocol(v)
		if err != nil {
			return "want tcp, udp, icmp, icmpv6, sctp or a protocol number (0-255)"
		}
		f.Protocol = append(f.Protocol, p)
		return ""
	}},
	{ParamPort, func(f *Filter, v string) string {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return "want a port number (1-65535)"
		}
		f.Port = append(f.Port, uint16(n))
		return ""
	}},
	{ParamService, func(f *Filter, v string) string {
		ns, name, ok := strings.Cut(v, "/")
		if !ok || ns == "" || name == "" || strings.ContainsAny(name, "/ ") || strings.Contains(ns, " ") {
			return "want <namespace>/<service>"
		}
		f.Service = append(f.Service, ServiceRef{Namespace: ns, Name: name})
		return ""
	}},
}

func addPod(to *[]PodRef, v string) string {
	ns, name, ok := strings.Cut(v, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "want <namespace>/<pod>"
	}
	*to = append(*to, PodRef{Namespace: ns, Name: name})
	return ""
}

func addCluster(to *[]string, v string) string {
	if err := identity.ValidateClusterName(v); err != nil {
		return "want a cluster name (lowercase letters, digits and '-', at most 32)"
	}
	*to = append(*to, v)
	return ""
}

func addLabel(f *Filter, v string) string {
	l, err := identity.ParseLabel(v)
	if err != nil {
		return "want a label: [source:]key[=value], e.g. k8s:app=x-wing or app=x-wing"
	}
	m := LabelMatch{Key: l.Key, Value: l.Value, HasValue: strings.Contains(v, "=")}
	if l.Source != identity.SourceUnspec || strings.HasPrefix(v, identity.SourceUnspec+":") {
		m.Source = l.Source
	}
	f.Label = append(f.Label, m)
	return ""
}

// ParseFilter reads the filter parameters of q (each may repeat); other
// parameters are ignored. The first value that does not parse is returned
// as a *ParamError.
func ParseFilter(q url.Values) (Filter, error) {
	var f Filter
	for _, p := range filterParams {
		for _, v := range q[p.name] {
			if want := p.parse(&f, v); want != "" {
				return Filter{}, &ParamError{Param: p.name, Value: v, Want: want}
			}
		}
	}
	return f, nil
}

// Values returns the query parameters of f: ParseFilter(f.Values()) is f.
func (f Filter) Values() url.Values {
	q := url.Values{}
	add := func(name string, vs ...string) {
		q[name] = append(q[name], vs...)
	}
	for _, p := range f.FromPod {
		add(ParamFromPod, p.String())
	}
	for _, p := range f.ToPod {
		add(ParamToPod, p.String())
	}
	add(ParamFromCluster, f.FromCluster...)
	add(ParamToCluster, f.ToCluster...)
	add(ParamNamespace, f.Namespace...)
	for _, l := range f.Label {
		add(ParamLabel, l.String())
	}
	for _, id := range f.Identity {
		add(ParamIdentity, strconv.FormatUint(uint64(id), 10))
	}
	add(ParamVerdict, f.Verdict...)
	for _, p := range f.Protocol {
		add(ParamProtocol, strconv.Itoa(int(p)))
	}
	for _, p := range f.Port {
		add(ParamPort, strconv.Itoa(int(p)))
	}
	for _, sv := range f.Service {
		add(ParamService, sv.String())
	}
	for k, v := range q {
		if len(v) == 0 {
			delete(q, k)
		}
	}
	return q
}

// Match reports whether fl passes f.
func (f *Filter) Match(fl *Flow) bool {
	return anyOf(f.FromPod, func(p PodRef) bool { return fl.Src.isPod(p) }) &&
		anyOf(f.ToPod, func(p PodRef) bool { return fl.Dst.isPod(p) }) &&
		anyOf(f.FromCluster, func(c string) bool { return fl.Src.Cluster == c }) &&
		anyOf(f.ToCluster, func(c string) bool { return fl.Dst.Cluster == c }) &&
		anyOf(f.Namespace, func(ns string) bool { return fl.Src.Namespace == ns || fl.Dst.Namespace == ns }) &&
		anyOf(f.Label, func(l LabelMatch) bool { return l.matchAny(fl.Src.Labels) || l.matchAny(fl.Dst.Labels) }) &&
		anyOf(f.Identity, func(id uint32) bool { return fl.Src.Identity == id || fl.Dst.Identity == id }) &&
		anyOf(f.Verdict, func(v string) bool { return fl.Verdict == v }) &&
		anyOf(f.Protocol, func(p Protocol) bool { return fl.Protocol == p }) &&
		anyOf(f.Port, func(p uint16) bool { return fl.Src.Port == p || fl.Dst.Port == p }) &&
		anyOf(f.Service, func(sv ServiceRef) bool {
			return fl.Service != nil && fl.Service.Name == sv.Name && fl.Service.Namespace == sv.Namespace
		})
}

// anyOf is true when vs is empty or match accepts one of them.
func anyOf[T any](vs []T, match func(T) bool) bool {
	return len(vs) == 0 || slices.ContainsFunc(vs, match)
}

func (e *Endpoint) isPod(p PodRef) bool { return e.Pod == p.Name && e.Namespace == p.Namespace }

// matchAny reports whether one of labels ("source:key=value") matches l.
func (l LabelMatch) matchAny(labels []string) bool {
	for _, s := range labels {
		src, rest, _ := strings.Cut(s, ":")
		if l.Source != "" && src != l.Source {
			continue
		}
		key, value, _ := strings.Cut(rest, "=")
		if key == l.Key && (!l.HasValue || value == l.Value) {
			return true
		}
	}
	return false
}
