package identity

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Operator is the operator of a selector requirement, spelled as in
// Kubernetes' metav1.LabelSelectorOperator.
type Operator string

// The operators of Kubernetes label selectors.
const (
	OpIn           Operator = "In"
	OpNotIn        Operator = "NotIn"
	OpExists       Operator = "Exists"
	OpDoesNotExist Operator = "DoesNotExist"
)

// Requirement is one match expression of a selector.
//
// Key is "source:key" or a bare key. A bare key, or the source "any",
// matches the label with that key whatever its source (Cilium's "any"
// source); any other source must match exactly. A bare key that contains
// ':' must be written with the "any:" prefix.
type Requirement struct {
	Key      string
	Operator Operator
	Values   []string
}

// Selector is an immutable label selector with the semantics of Kubernetes'
// labels.Selector built from a metav1.LabelSelector:
//
//   - the empty selector (and the zero value) matches every label set;
//   - In matches when the key is present and its value is one of Values;
//   - NotIn matches when the key is absent or its value is none of Values;
//   - Exists matches when the key is present, DoesNotExist when it is absent;
//   - all requirements must match (AND).
//
// A label whose source differs from the one a requirement names counts as
// absent for that requirement.
type Selector struct {
	reqs []requirement // canonical: sorted, deduplicated
}

// requirement is a validated Requirement with its key split and its values
// sorted and deduplicated.
type requirement struct {
	source string // SourceAny for a bare key
	key    string // bare key
	op     Operator
	values []string
}

// NewSelector validates and builds a selector. Each matchLabels entry k: v
// is the requirement "k In (v)". Errors name the offending key or operator
// and say how to fix it: an unknown operator, In/NotIn without values,
// Exists/DoesNotExist with values, an invalid key or value.
func NewSelector(matchLabels map[string]string, exprs []Requirement) (Selector, error) {
	reqs := make([]requirement, 0, len(matchLabels)+len(exprs))
	// Sorted so that the first error reported does not depend on map order.
	for _, k := range slices.Sorted(maps.Keys(matchLabels)) {
		r, err := newRequirement(Requirement{Key: k, Operator: OpIn, Values: []string{matchLabels[k]}})
		if err != nil {
			return Selector{}, fmt.Errorf("invalid selector: matchLabels: %w", err)
		}
		reqs = append(reqs, r)
	}
	for i, e := range exprs {
		r, err := newRequirement(e)
		if err != nil {
			return Selector{}, fmt.Errorf("invalid selector: matchExpressions[%d]: %w", i, err)
		}
		reqs = append(reqs, r)
	}
	slices.SortFunc(reqs, compareRequirements)
	reqs = slices.CompactFunc(reqs, func(a, b requirement) bool { return compareRequirements(a, b) == 0 })
	return Selector{reqs: slices.Clip(reqs)}, nil
}

func newRequirement(e Requirement) (requirement, error) {
	src, key, err := parseSelectorKey(e.Key)
	if err != nil {
		return requirement{}, err
	}
	r := requirement{source: src, key: key, op: e.Operator}
	switch e.Operator {
	case OpIn, OpNotIn:
		if len(e.Values) == 0 {
			return requirement{}, fmt.Errorf("key %q: operator %s needs at least one value: add values or use %s/%s", e.Key, e.Operator, OpExists, OpDoesNotExist)
		}
		for _, v := range e.Values {
			if err := checkText("value", v, ";,()", true); err != nil {
				return requirement{}, fmt.Errorf("key %q: %w", e.Key, err)
			}
		}
		r.values = slices.Compact(slices.Sorted(slices.Values(e.Values)))
	case OpExists, OpDoesNotExist:
		if len(e.Values) != 0 {
			return requirement{}, fmt.Errorf("key %q: operator %s takes no values, got %q: remove the values or use %s/%s", e.Key, e.Operator, e.Values, OpIn, OpNotIn)
		}
	default:
		return requirement{}, fmt.Errorf("key %q: unknown operator %q: use one of %s, %s, %s, %s", e.Key, e.Operator, OpIn, OpNotIn, OpExists, OpDoesNotExist)
	}
	return r, nil
}

// parseSelectorKey splits a selector key into its source (SourceAny when
// absent) and bare key, and validates both.
func parseSelectorKey(k string) (source, key string, err error) {
	src, bare, ok := splitSource(k)
	if !ok {
		src, bare = SourceAny, k
	}
	if err := checkSource(src); err != nil {
		return "", "", fmt.Errorf("invalid key %q: %w", k, err)
	}
	if err := checkKey(bare); err != nil {
		return "", "", fmt.Errorf("invalid key %q: %w", k, err)
	}
	// Characters that would make the String form ambiguous.
	if err := checkText("selector key", bare, ",()!", false); err != nil {
		return "", "", fmt.Errorf("invalid key %q: %w", k, err)
	}
	return src, bare, nil
}

// canonicalKey is the key as Requirements and String show it: bare when the
// source is "any" and the bare key has no ':', "source:key" otherwise.
func (r requirement) canonicalKey() string {
	if r.source == SourceAny && !strings.Contains(r.key, ":") {
		return r.key
	}
	return r.source + ":" + r.key
}

func opRank(op Operator) int {
	return slices.Index([]Operator{OpIn, OpNotIn, OpExists, OpDoesNotExist}, op)
}

func compareRequirements(a, b requirement) int {
	return cmp.Or(
		cmp.Compare(a.key, b.key),
		cmp.Compare(a.source, b.source),
		cmp.Compare(opRank(a.op), opRank(b.op)),
		slices.Compare(a.values, b.values),
	)
}

// Matches reports whether the labels satisfy every requirement.
func (s Selector) Matches(ls Labels) bool {
	for _, r := range s.reqs {
		l, present := ls.lookup(r.source, r.key)
		switch r.op {
		case OpIn:
			if !present || !slices.Contains(r.values, l.Value) {
				return false
			}
		case OpNotIn:
			if present && slices.Contains(r.values, l.Value) {
				return false
			}
		case OpExists:
			if !present {
				return false
			}
		case OpDoesNotExist:
			if present {
				return false
			}
		}
	}
	return true
}

// Empty reports whether the selector has no requirements (and so matches
// everything).
func (s Selector) Empty() bool { return len(s.reqs) == 0 }

// HasKey reports whether a requirement mentions key. key is "source:key" or
// bare; the bare keys must be equal, and the sources too unless either side
// is "any" (a bare key is "any"). So HasKey(ClusterLabelKey) is true for a
// selector on "k8s:io.cilium.k8s.policy.cluster" as well.
func (s Selector) HasKey(key string) bool {
	src, bare, ok := splitSource(key)
	if !ok {
		src, bare = SourceAny, key
	}
	for _, r := range s.reqs {
		if r.key == bare && (src == SourceAny || r.source == SourceAny || r.source == src) {
			return true
		}
	}
	return false
}

// Requirements returns a copy of the canonical requirements: sorted by key,
// source, operator and values, with duplicates and duplicate values removed,
// matchLabels entries shown as In with one value, keys in canonical form
// (bare for "any" keys without ':', "source:key" otherwise).
func (s Selector) Requirements() []Requirement {
	out := make([]Requirement, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = Requirement{Key: r.canonicalKey(), Operator: r.op, Values: slices.Clone(r.values)}
	}
	return out
}

// Equal reports whether two selectors have the same canonical requirements.
func (s Selector) Equal(other Selector) bool {
	return slices.EqualFunc(s.reqs, other.reqs, func(a, b requirement) bool { return compareRequirements(a, b) == 0 })
}

// String returns the canonical form, in Kubernetes' selector syntax, of the
// requirements joined by ',': "key=v" and "key!=v" for In and NotIn with one
// value, "key in (a,b)", "key notin (a,b)", "key" for Exists and "!key" for
// DoesNotExist. The empty selector gives "". Equal selectors give equal
// strings.
func (s Selector) String() string {
	parts := make([]string, len(s.reqs))
	for i, r := range s.reqs {
		k := r.canonicalKey()
		switch {
		case r.op == OpIn && len(r.values) == 1:
			parts[i] = k + "=" + r.values[0]
		case r.op == OpNotIn && len(r.values) == 1:
			parts[i] = k + "!=" + r.values[0]
		case r.op == OpIn:
			parts[i] = k + " in (" + strings.Join(r.values, ",") + ")"
		case r.op == OpNotIn:
			parts[i] = k + " notin (" + strings.Join(r.values, ",") + ")"
		case r.op == OpExists:
			parts[i] = k
		default:
			parts[i] = "!" + k
		}
	}
	return strings.Join(parts, ",")
}
