package remote

import "errors"

var (
	// ErrClusterIDMismatch marks a peer that announces another cluster ID
	// than the one `clustermesh connect` recorded in its config file.
	ErrClusterIDMismatch = errors.New("cluster ID differs from the recorded one")
	// ErrClusterIDPinned marks a peer that claims a cluster ID another
	// peer's config pins.
	ErrClusterIDPinned = errors.New("cluster ID pinned by another peer")
)
