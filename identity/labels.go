package identity

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Label sources, as in Cilium.
const (
	// SourceK8s marks labels that come from Kubernetes objects.
	SourceK8s = "k8s"
	// SourceReserved marks the labels of reserved identities ("reserved:host").
	SourceReserved = "reserved"
	// SourceUnspec is the source of a label parsed without one ("app=x").
	SourceUnspec = "unspec"
	// SourceAny matches every source in lookups and selectors.
	SourceAny = "any"
)

// Well-known label keys, as in Cilium.
const (
	// ClusterLabelKey carries the name of the cluster a pod runs in.
	ClusterLabelKey = "io.cilium.k8s.policy.cluster"
	// NamespaceLabelKey carries the namespace of a pod.
	NamespaceLabelKey = "io.kubernetes.pod.namespace"
	// ServiceAccountLabelKey carries the service account of a pod.
	ServiceAccountLabelKey = "io.cilium.k8s.policy.serviceaccount"
	// NamespaceLabelsPrefix prefixes the labels of a pod's namespace when
	// they are copied onto the pod ("io.cilium.k8s.namespace.labels.team").
	NamespaceLabelsPrefix = "io.cilium.k8s.namespace.labels."
)

// Label is one security label: a key and a value from a source.
//
// A Label is a plain comparable value. An empty Source is treated as
// SourceUnspec everywhere (String, Labels); use NewLabel or ParseLabel to get
// a validated Label.
type Label struct {
	Source string
	Key    string
	Value  string
}

// NewLabel returns a validated label; an empty source becomes SourceUnspec.
func NewLabel(source, key, value string) (Label, error) {
	l := Label{Source: source, Key: key, Value: value}.normalized()
	if err := l.Validate(); err != nil {
		return Label{}, err
	}
	return l, nil
}

// normalized returns l with an empty source replaced by SourceUnspec.
func (l Label) normalized() Label {
	if l.Source == "" {
		l.Source = SourceUnspec
	}
	return l
}

// String returns "source:key=value", or "source:key" when the value is
// empty. ParseLabel(l.String()) returns l for every valid, normalized l.
func (l Label) String() string {
	l = l.normalized()
	if l.Value == "" {
		return l.Source + ":" + l.Key
	}
	return l.Source + ":" + l.Key + "=" + l.Value
}

// Validate reports whether l can be printed and parsed back unchanged, in
// both the label and the kvstore form. An empty source is accepted (it
// means SourceUnspec).
func (l Label) Validate() error {
	if err := l.normalized().check(); err != nil {
		return fmt.Errorf("invalid label %q: %w", l.String(), err)
	}
	return nil
}

// check validates the three parts of l without naming l.
func (l Label) check() error {
	if err := checkSource(l.Source); err != nil {
		return err
	}
	if err := checkKey(l.Key); err != nil {
		return err
	}
	return checkValue(l.Value)
}

// ParseLabel parses "source:key=value", "source:key", "key=value" or "key".
//
// As in Cilium, the source is the text before the first ':' only when that
// ':' comes before any '='; otherwise the source is SourceUnspec. The key
// runs up to the first '=' and may itself contain ':' ("k8s:a:b=c" has key
// "a:b"); the value is everything after that '=' and may contain '=' and ':'.
// "k8s:app=" and "k8s:app" both give an empty value.
//
// Rules: the source must not be empty when a ':' introduces it; the key must
// not be empty; source and key contain no whitespace; no part contains ';'
// (the kvstore separator), control characters or invalid UTF-8.
func ParseLabel(s string) (Label, error) {
	src, rest, hasSource := splitSource(s)
	if !hasSource {
		src = SourceUnspec
	} else if src == "" {
		return Label{}, fmt.Errorf("invalid label %q: empty source before ':': drop the leading ':' or name a source such as %q", s, SourceK8s)
	}
	key, value, _ := strings.Cut(rest, "=")
	l := Label{Source: src, Key: key, Value: value}
	if err := l.check(); err != nil {
		return Label{}, fmt.Errorf("invalid label %q: %w", s, err)
	}
	return l, nil
}

// splitSource splits s at its first ':' when that ':' comes before any '='.
// ok is false (and rest is s) when s has no source prefix.
func splitSource(s string) (source, rest string, ok bool) {
	colon := strings.IndexByte(s, ':')
	if colon < 0 {
		return "", s, false
	}
	if eq := strings.IndexByte(s, '='); eq >= 0 && eq < colon {
		return "", s, false
	}
	return s[:colon], s[colon+1:], true
}

// Errors of the part checks. They are wrapped by the callers, which name the
// whole input.
var (
	errEmptySource = errors.New("empty source: name a source such as \"k8s\"")
	errEmptyKey    = errors.New("empty key: write the label as source:key=value with a non-empty key")
)

func checkSource(s string) error {
	if s == "" {
		return errEmptySource
	}
	return checkText("source", s, ":=;", false)
}

func checkKey(s string) error {
	if s == "" {
		return errEmptyKey
	}
	return checkText("key", s, "=;", false)
}

func checkValue(s string) error {
	return checkText("value", s, ";", true)
}

// checkText rejects invalid UTF-8, control characters, any rune of forbidden
// and, unless spaceOK, whitespace. what names the part in the error.
func checkText(what, s, forbidden string, spaceOK bool) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8: use UTF-8 text", what, s)
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return fmt.Errorf("%s %q contains control character %U: remove it", what, s, r)
		case !spaceOK && unicode.IsSpace(r):
			return fmt.Errorf("%s %q contains whitespace: remove it", what, s)
		case strings.ContainsRune(forbidden, r):
			return fmt.Errorf("%s %q contains %q, which is not allowed in a %s: remove it", what, s, r, what)
		}
	}
	return nil
}
