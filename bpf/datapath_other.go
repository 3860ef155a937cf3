//go:build !linux

package bpf

// Datapath is only implemented on linux.
type Datapath struct{}

// Load returns ErrNotSupported outside linux.
func Load(Options) (*Datapath, error) { return nil, ErrNotSupported }

// AttachCgroup returns ErrNotSupported outside linux.
func (*Datapath) AttachCgroup(string) error { return ErrNotSupported }

// IPCacheCapacity is 0 outside linux.
func (*Datapath) IPCacheCapacity() int { return 0 }
