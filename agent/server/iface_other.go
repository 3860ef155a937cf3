//go:build !linux

package server

import "errors"

func hostIfIndex(string, string) (int, error) {
	return 0, errors.New("pod interfaces are only supported on linux")
}

func cgroup2Root() (string, error) { return "", errors.New("cgroup v2 is linux only") }
