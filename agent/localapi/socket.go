package localapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/clustermesh/clustermesh/internal/httpserve"
)

// Serve serves h on the unix socket at path until ctx ends, then removes
// the socket. A stale socket file is replaced; the socket appears only
// once it accepts connections.
func Serve(ctx context.Context, path string, h http.Handler) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("create the directory of --api-socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove a stale --api-socket: %w", err)
	}
	// Listen on a temporary name, then rename: a client never finds the
	// socket file before it accepts connections (between bind and listen
	// it would be refused).
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return fmt.Errorf("listen on --api-socket %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Rename(tmp, path); err != nil {
		_ = l.Close()
		return fmt.Errorf("put the API socket in place at %s: %w", path, err)
	}
	err = httpserve.Run(ctx, l, h)
	_ = os.Remove(path)
	return err
}
