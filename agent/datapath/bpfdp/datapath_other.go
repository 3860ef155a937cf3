//go:build !linux

package bpfdp

import (
	"context"
	"fmt"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
)

// Datapath is only implemented on linux.
type Datapath struct{ datapath.Datapath }

// New returns bpf.ErrNotSupported outside linux.
func New(context.Context, bpf.Options, string, ...Option) (*Datapath, error) {
	return nil, fmt.Errorf("open eBPF datapath: %w", bpf.ErrNotSupported)
}

// Close does nothing outside linux.
func (*Datapath) Close() error { return nil }

// BPF returns nothing outside linux.
func (*Datapath) BPF() *bpf.Datapath { return nil }
