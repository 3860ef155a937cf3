package identity

import (
	"cmp"
	"fmt"
	"iter"
	"slices"
	"strings"
)

// Labels is an immutable set of labels holding at most one label per key,
// whatever its source (as Cilium's labels.Labels, which is keyed by the bare
// key). Labels are kept sorted by key. The zero value is the empty set.
//
// Labels has an Equal method, so go-cmp compares Labels values by content.
type Labels struct {
	list []Label // sorted by Key, keys unique, sources normalized
}

// NewLabels returns the set of the given labels. An empty source becomes
// SourceUnspec. When several labels share a key, the last one wins, as in
// Merge. NewLabels does not validate: use Labels.Validate, or build labels
// with ParseLabel / NewLabel.
func NewLabels(labels ...Label) Labels {
	if len(labels) == 0 {
		return Labels{}
	}
	list := make([]Label, len(labels))
	for i, l := range labels {
		list[i] = l.normalized()
	}
	slices.SortStableFunc(list, func(a, b Label) int { return cmp.Compare(a.Key, b.Key) })
	// Keep the last label of each run of equal keys.
	out := list[:0]
	for i, l := range list {
		if i+1 < len(list) && list[i+1].Key == l.Key {
			continue
		}
		out = append(out, l)
	}
	return Labels{list: slices.Clip(out)}
}

// ParseLabels parses each string with ParseLabel. It fails on the first
// invalid label, and when two labels have the same key.
func ParseLabels(ss ...string) (Labels, error) {
	list := make([]Label, 0, len(ss))
	seen := make(map[string]string, len(ss))
	for _, s := range ss {
		l, err := ParseLabel(s)
		if err != nil {
			return Labels{}, err
		}
		if prev, dup := seen[l.Key]; dup {
			return Labels{}, fmt.Errorf("labels %q and %q have the same key %q: a label set holds each key once, drop one", prev, s, l.Key)
		}
		seen[l.Key] = s
		list = append(list, l)
	}
	return NewLabels(list...), nil
}

// Len returns the number of labels.
func (ls Labels) Len() int { return len(ls.list) }

// All iterates over the labels in key order.
func (ls Labels) All() iter.Seq[Label] {
	return func(yield func(Label) bool) {
		for _, l := range ls.list {
			if !yield(l) {
				return
			}
		}
	}
}

// Slice returns a copy of the labels in key order.
func (ls Labels) Slice() []Label { return slices.Clone(ls.list) }

// index returns the position of the label with the bare key, or -1.
func (ls Labels) index(key string) int {
	i, ok := slices.BinarySearchFunc(ls.list, key, func(l Label, k string) int { return cmp.Compare(l.Key, k) })
	if !ok {
		return -1
	}
	return i
}

// lookup returns the label with the bare key if its source is source (any
// source when source is SourceAny).
func (ls Labels) lookup(source, key string) (Label, bool) {
	i := ls.index(key)
	if i < 0 {
		return Label{}, false
	}
	l := ls.list[i]
	if source != SourceAny && l.Source != source {
		return Label{}, false
	}
	return l, true
}

// Get looks a label up by key. key is "source:key" or a bare "key"; a bare
// key or the source "any" matches every source, any other source must match
// exactly ("unspec" included). A bare key that contains ':' must be written
// with the "any:" prefix ("any:a:b").
func (ls Labels) Get(key string) (Label, bool) {
	src, bare, ok := splitSource(key)
	if !ok || src == "" {
		src, bare = SourceAny, key
	}
	return ls.lookup(src, bare)
}

// Has reports whether ls contains l: same key and value, and same source
// unless l.Source is SourceAny. An empty l.Source means SourceUnspec.
func (ls Labels) Has(l Label) bool {
	l = l.normalized()
	got, ok := ls.lookup(l.Source, l.Key)
	return ok && got.Value == l.Value
}

// Merge returns the union of ls and other; on a shared key the label of
// other wins.
func (ls Labels) Merge(other Labels) Labels {
	return NewLabels(append(slices.Clone(ls.list), other.list...)...)
}

// Equal reports whether ls and other hold the same labels.
func (ls Labels) Equal(other Labels) bool {
	return slices.Equal(ls.list, other.list)
}

// Validate returns the error of the first invalid label, in key order.
func (ls Labels) Validate() error {
	for _, l := range ls.list {
		if err := l.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// String returns the labels in key order, each as Label.String, separated
// by ','. It is meant for humans; use SortedKVStoreString for storage.
func (ls Labels) String() string {
	parts := make([]string, len(ls.list))
	for i, l := range ls.list {
		parts[i] = l.String()
	}
	return strings.Join(parts, ",")
}
