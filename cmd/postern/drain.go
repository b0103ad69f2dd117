package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"
)

const flagUndo = "undo"

// drainCommand returns "postern drain": start (or stop) draining a running
// server through its admin listener, as SIGUSR1 does.
func drainCommand() *cli.Command {
	return &cli.Command{
		Name:      "drain",
		Usage:     "stop a running server taking new allocations while existing ones run to their end (through its admin listener)",
		UsageText: "postern drain [--undo] [--admin ADDR] [--admin-token TOKEN] [--config FILE]",
		Description: "New Allocates get 508, or 300 Try Alternate with [drain] alternate_server; /readyz turns 503.\n" +
			"Existing allocations keep relaying. A SIGTERM then stops the server once the last allocation has\n" +
			"ended (at most [drain] timeout). Same as kill -USR1. --undo accepts new allocations again.",
		Flags: append(adminClientFlags(),
			&cli.BoolFlag{Name: flagUndo, Usage: "stop draining: accept new allocations again"},
		),
		OnUsageError: usageError,
		Action:       drainAction,
	}
}

func drainAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.Bool(flagFleet) {
		return fleetDrain(ctx, cmd)
	}
	c, err := adminClient(cmd)
	if err != nil {
		return err
	}
	st, err := c.Drain(ctx, !cmd.Bool(flagUndo))
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	w := cmd.Root().Writer
	if st.Draining {
		_, err = fmt.Fprintf(w, "draining: %d allocations left; new ones are refused\n", st.Allocations)
	} else {
		_, err = fmt.Fprintf(w, "serving: new allocations are accepted (%d live)\n", st.Allocations)
	}
	return err
}
