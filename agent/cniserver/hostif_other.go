//go:build !linux

package cniserver

import "errors"

func hostIfIndex(string, string) (int, error) {
	return 0, errors.New("pod interfaces are only supported on linux")
}
