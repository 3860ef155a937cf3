package schema

import (
	"bytes"
	"errors"
	"unicode/utf8"
)

// IdentityValue is the value at "<root>/state/identities/v1/id/<id>": the
// identity's labels in Cilium's sorted kvstore form, e.g.
// "k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=c3;k8s:io.kubernetes.pod.namespace=bar;".
// The value is stored raw, not as JSON. Label syntax is checked by package
// identity; ID comes from the key.
type IdentityValue struct {
	ID     uint32
	Labels string
}

// Marshal returns the raw etcd value (the label string, not JSON).
func (i IdentityValue) Marshal() ([]byte, error) { return []byte(i.Labels), nil }

// DecodeIdentity is DefaultPaths().DecodeIdentity.
func DecodeIdentity(key string, data []byte) (IdentityValue, error) {
	return DefaultPaths().DecodeIdentity(key, data)
}

// DecodeIdentity decodes the identity stored at key: the ID comes from the
// key; the value must be non-empty UTF-8 without NUL bytes ending in ';'.
func (p Paths) DecodeIdentity(key string, data []byte) (IdentityValue, error) {
	id, err := p.ParseIdentityKey(key)
	if err != nil {
		return IdentityValue{}, err
	}
	var msg string
	switch {
	case len(data) == 0:
		msg = "identity labels are empty"
	case bytes.IndexByte(data, 0) >= 0:
		msg = "identity labels contain a NUL byte"
	case !utf8.Valid(data):
		msg = "identity labels are not valid UTF-8"
	case data[len(data)-1] != ';':
		msg = "identity labels do not end with ';'"
	default:
		return IdentityValue{ID: id, Labels: string(data)}, nil
	}
	return IdentityValue{}, &DecodeError{Key: key, Err: errors.New(msg)}
}
