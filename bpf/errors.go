package bpf

import "errors"

// ErrNotSupported is returned on platforms without the eBPF datapath.
var ErrNotSupported = errors.New("eBPF datapath is only supported on linux")

// ErrClosed is returned by operations on a closed Datapath.
var ErrClosed = errors.New("datapath closed")

// ErrInvalidRule is returned by Policy.Set for a rule it cannot express.
var ErrInvalidRule = errors.New("invalid policy rule")

// ErrInvalidAddress is returned for addresses the datapath cannot hold
// (for example an IPv6 service frontend or tunnel endpoint).
var ErrInvalidAddress = errors.New("invalid address")

// ErrInvalidEvent is returned by EventReader.Read for a ring buffer record
// that does not decode as an event (a program and a reader of different
// builds); the reader stays usable.
var ErrInvalidEvent = errors.New("invalid datapath event")
