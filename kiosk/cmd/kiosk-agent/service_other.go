//go:build !windows

package main

import "context"

// runAsService reports false: outside Windows a service manager (systemd)
// runs the command as it is.
func runAsService(func(context.Context) error) (bool, error) { return false, nil }
