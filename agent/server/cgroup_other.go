//go:build !linux

package server

import "errors"

func cgroup2Root() (string, error) { return "", errors.New("cgroup v2 is linux only") }
