//go:build !linux

package main

import (
	"context"
	"errors"
)

// The measuring modes use epoll, recvmmsg, UDP GSO and /proc: Linux only.
var errLinuxOnly = errors.New("measuring needs Linux (epoll, recvmmsg, UDP GSO, /proc); the table subcommand works anywhere")

func runRelay(context.Context, *config) (*result, error) { return nil, errLinuxOnly }
func runSetup(context.Context, *config) (*result, error) { return nil, errLinuxOnly }
func runIdle(context.Context, *config) (*result, error)  { return nil, errLinuxOnly }
func runPing(context.Context, *config) (*result, error)  { return nil, errLinuxOnly }
func clockTicks() float64                                { return 100 }
