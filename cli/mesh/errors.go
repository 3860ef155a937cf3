package mesh

import "errors"

var (
	// ErrNotInstalled marks a cluster without the chart's ConfigMap or
	// Secrets.
	ErrNotInstalled = errors.New("clustermesh is not installed")
	// ErrInvalidSettings marks a ConfigMap or Secret whose content is wrong.
	ErrInvalidSettings = errors.New("invalid mesh settings")
	// ErrConflict marks clusters that cannot be meshed together.
	ErrConflict = errors.New("clusters cannot be meshed")
)
