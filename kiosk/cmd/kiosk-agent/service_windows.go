//go:build windows

package main

import (
	"context"

	"golang.org/x/sys/windows/svc"
)

// runAsService runs the agent under the Windows service control manager
// when it started the process, and reports whether it did. Stop and
// shutdown requests cancel the agent's context, as SIGTERM does elsewhere.
func runAsService(run func(context.Context) error) (bool, error) {
	is, err := svc.IsWindowsService()
	if err != nil || !is {
		return false, err
	}
	h := &service{run: run}
	// The name is ignored for a service in its own process.
	if err := svc.Run("kiosk-agent", h); err != nil {
		return true, err
	}
	return true, h.err
}

type service struct {
	run func(context.Context) error
	err error
}

// Execute implements svc.Handler.
func (s *service) Execute(_ []string, reqs <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case err := <-done:
			s.err = err
			if err != nil {
				return true, 1 // service-specific exit code: see the log
			}
			return false, 0
		case r := <-reqs:
			switch r.Cmd {
			case svc.Interrogate:
				status <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending}
				cancel()
			}
		}
	}
}
