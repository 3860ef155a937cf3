package identity

import (
	"fmt"
	"strings"
)

// SortedKVStoreString returns the kvstore form of the labels, the one
// Cilium's Labels.SortedList writes into identity keys and values: the labels
// sorted by key, each written as "source:key=value;" (the '=' is written even
// for an empty value), concatenated. For example:
//
//	k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=c3;k8s:io.kubernetes.pod.namespace=bar;
//
// The order is Cilium's: by bare key (a set never holds two labels with the
// same key, so the source never decides the order). The empty set gives "".
// Labels that fail Validate may give a string that ParseKVStoreLabels
// rejects.
func (ls Labels) SortedKVStoreString() string {
	var b strings.Builder
	n := 0
	for _, l := range ls.list {
		n += len(l.Source) + len(l.Key) + len(l.Value) + 3
	}
	b.Grow(n)
	for _, l := range ls.list {
		b.WriteString(l.Source)
		b.WriteByte(':')
		b.WriteString(l.Key)
		b.WriteByte('=')
		b.WriteString(l.Value)
		b.WriteByte(';')
	}
	return b.String()
}

// ParseKVStoreLabels parses the kvstore form written by SortedKVStoreString
// (and by Cilium). It is strict: every label must be "source:key=value;"
// with an explicit source, an '=' and a trailing ';', and each key must
// appear once. The labels need not be sorted; compare the input with
// SortedKVStoreString of the result to check that it is canonical. The empty
// string is the empty set.
func ParseKVStoreLabels(s string) (Labels, error) {
	if s == "" {
		return Labels{}, nil
	}
	if !strings.HasSuffix(s, ";") {
		return Labels{}, fmt.Errorf("invalid kvstore labels %q: missing trailing ';': end every label, the last one included, with ';'", s)
	}
	parts := strings.Split(s[:len(s)-1], ";")
	list := make([]Label, 0, len(parts))
	seen := make(map[string]string, len(parts))
	for i, p := range parts {
		l, err := parseKVStoreLabel(p)
		if err != nil {
			return Labels{}, fmt.Errorf("invalid kvstore labels %q: label %d %q: %w", s, i+1, p, err)
		}
		if prev, dup := seen[l.Key]; dup {
			return Labels{}, fmt.Errorf("invalid kvstore labels %q: labels %q and %q have the same key %q: a label set holds each key once", s, prev, p, l.Key)
		}
		seen[l.Key] = p
		list = append(list, l)
	}
	return NewLabels(list...), nil
}

// parseKVStoreLabel parses one "source:key=value" element (without ';').
func parseKVStoreLabel(p string) (Label, error) {
	if p == "" {
		return Label{}, fmt.Errorf("empty label (\";;\" or a leading ';'): remove the extra ';'")
	}
	src, rest, ok := splitSource(p)
	if !ok {
		return Label{}, fmt.Errorf("no source: write the label as source:key=value, e.g. %q", SourceK8s+":"+p)
	}
	key, value, ok := strings.Cut(rest, "=")
	if !ok {
		return Label{}, fmt.Errorf("no '=' after the key: write the label as source:key=value (source:key= for an empty value)")
	}
	l := Label{Source: src, Key: key, Value: value}
	if err := l.check(); err != nil {
		return Label{}, err
	}
	return l, nil
}

// PodLabels returns the security labels of a pod, all with source k8s, built
// the way Cilium builds them:
//
//   - every pod label as is;
//   - every namespace label as NamespaceLabelsPrefix+key
//     ("io.cilium.k8s.namespace.labels.team");
//   - NamespaceLabelKey = namespace;
//   - ServiceAccountLabelKey = serviceAccount;
//   - ClusterLabelKey = cluster.
//
// Each of the last three is omitted when its value is empty. On a key
// clash a later item of this list wins, so a pod cannot override its own
// namespace, service account or cluster labels. PodLabels does not validate
// (Kubernetes already did); call Validate on the result to check.
func PodLabels(cluster, namespace, serviceAccount string, podLabels, namespaceLabels map[string]string) Labels {
	list := make([]Label, 0, len(podLabels)+len(namespaceLabels)+3)
	for k, v := range podLabels {
		list = append(list, Label{Source: SourceK8s, Key: k, Value: v})
	}
	for k, v := range namespaceLabels {
		list = append(list, Label{Source: SourceK8s, Key: NamespaceLabelsPrefix + k, Value: v})
	}
	for _, kv := range [...][2]string{
		{NamespaceLabelKey, namespace},
		{ServiceAccountLabelKey, serviceAccount},
		{ClusterLabelKey, cluster},
	} {
		if kv[1] != "" {
			list = append(list, Label{Source: SourceK8s, Key: kv[0], Value: kv[1]})
		}
	}
	return NewLabels(list...)
}
