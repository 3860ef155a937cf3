//go:build !linux

package bpf

// Datapath is only implemented on linux.
type Datapath struct{}

// Load returns ErrNotSupported outside linux.
func Load(Options) (*Datapath, error) { return nil, ErrNotSupported }
