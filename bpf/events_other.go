//go:build !linux

package bpf

import "context"

// EventReader is only implemented on linux.
type EventReader struct{}

// Events returns ErrNotSupported outside linux.
func (*Datapath) Events() (*EventReader, error) { return nil, ErrNotSupported }

// EventsLost returns ErrNotSupported outside linux.
func (*Datapath) EventsLost() (uint64, error) { return 0, ErrNotSupported }

// Read returns ErrNotSupported outside linux.
func (*EventReader) Read(context.Context) (Event, error) { return Event{}, ErrNotSupported }

// Close does nothing outside linux.
func (*EventReader) Close() error { return nil }
