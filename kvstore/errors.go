package kvstore

import "errors"

var (
	// ErrInvalidConfig marks a client or server configuration that cannot work.
	ErrInvalidConfig = errors.New("invalid etcd configuration")
	// ErrTLS marks a failed TLS handshake with an etcd endpoint (wrong CA,
	// wrong or expired certificate).
	ErrTLS = errors.New("TLS handshake with etcd failed")
	// ErrUnreachable marks an etcd cluster none of whose endpoints answered.
	ErrUnreachable = errors.New("etcd unreachable")
	// ErrClusterConfig marks a missing, malformed or mismatched cluster config.
	ErrClusterConfig = errors.New("cluster config")
)
