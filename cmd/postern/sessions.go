package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/config"
)

// flagSessionUser selects a user in the sessions and kick commands
// (flagJSON is shared with the credential command).
const flagSessionUser = "user"

// adminClientFlags are the flags that say how to reach the admin listener.
func adminClientFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: flagConfig, Aliases: []string{"c"}, TakesFile: true,
			Usage: "read the admin address and token from the server's TOML `FILE` ([admin] listen, token)"},
		adminClientAddrFlag(),
		adminTokenFlag("send the bearer `TOKEN` (the server's [admin] token)"),
	}, fleetFlags()...) // --fleet (cluster.go)
}

// sessionsCommand returns "postern sessions": list live allocations.
func sessionsCommand() *cli.Command {
	return &cli.Command{
		Name:      "sessions",
		Usage:     "list the live allocations of a running server (through its admin listener)",
		UsageText: "postern sessions [--user NAME] [--json] [--admin ADDR] [--admin-token TOKEN] [--config FILE]",
		Description: "Prints one line per live allocation, oldest first: its ID (for postern kick), user, client\n" +
			"address, transport, listener, relayed address, age, lifetime left, permissions, channel\n" +
			"bindings and bytes relayed each way. --json prints the admin API's JSON instead.",
		Flags: append(adminClientFlags(),
			&cli.StringFlag{Name: flagSessionUser, Usage: "only the allocations of user `NAME` (the USER of a REST username, or the whole username)"},
			&cli.BoolFlag{Name: flagJSON, Usage: "print JSON"},
		),
		OnUsageError: usageError,
		Action:       sessionsAction,
	}
}

// kickCommand returns "postern kick": end allocations.
func kickCommand() *cli.Command {
	return &cli.Command{
		Name:      "kick",
		Usage:     "end allocations of a running server, by ID or by user (through its admin listener)",
		UsageText: "postern kick ID...  |  postern kick --user NAME   [--admin ADDR] [--admin-token TOKEN] [--config FILE]",
		Description: "Ends the allocations at once, as a Refresh with lifetime 0 would: their relay ports close.\n" +
			"The credentials stay valid, so the client may allocate again: to keep a user out, remove\n" +
			"their user or rotate the secret, reload (SIGHUP), then kick.",
		Flags: append(adminClientFlags(),
			&cli.StringFlag{Name: flagSessionUser, Usage: "end every allocation of user `NAME`"},
		),
		OnUsageError: usageError,
		Action:       kickAction,
	}
}

// adminClient builds the client from the flags, then the --config file,
// then the defaults.
func adminClient(cmd *cli.Command) (*admin.Client, error) {
	addr, token := config.DefaultAdminListen, ""
	if path := cmd.String(flagConfig); path != "" {
		c, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		switch l, _ := c["admin.listen"].(string); {
		case strings.EqualFold(strings.TrimSpace(l), "off"):
			if !cmd.IsSet(flagAdmin) {
				return nil, fmt.Errorf("config %s: the admin listener is off (admin.listen = \"off\"): turn it on, or give --%s ADDR", path, flagAdmin)
			}
		case strings.TrimSpace(l) != "":
			addr = strings.TrimSpace(l)
		}
		token, _ = c["admin.token"].(string)
	}
	if cmd.IsSet(flagAdmin) {
		addr = cmd.String(flagAdmin)
	}
	if cmd.IsSet(flagAdminToken) {
		token = cmd.String(flagAdminToken)
	}
	if addr == "" || strings.EqualFold(addr, "off") {
		return nil, fmt.Errorf("--%s: give the admin listener's HOST:PORT (default %s)", flagAdmin, config.DefaultAdminListen)
	}
	return &admin.Client{Addr: admin.Dialable(addr), Token: token, HTTP: &http.Client{Timeout: 10 * time.Second}}, nil
}

func sessionsAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() > 0 {
		return fmt.Errorf("sessions takes no arguments, got %q (filter with --%s NAME)", cmd.Args().First(), flagSessionUser)
	}
	if cmd.Bool(flagFleet) {
		return fleetSessions(ctx, cmd)
	}
	c, err := adminClient(cmd)
	if err != nil {
		return err
	}
	list, err := c.Sessions(ctx, cmd.String(flagSessionUser))
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if cmd.Bool(flagJSON) {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(admin.SessionList{Sessions: list})
	}
	return admin.WriteSessions(w, list)
}

func kickAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.Bool(flagFleet) {
		return fleetKick(ctx, cmd)
	}
	user := cmd.String(flagSessionUser)
	switch {
	case user != "" && cmd.NArg() > 0:
		return fmt.Errorf("kick takes session IDs or --%s NAME, not both", flagSessionUser)
	case user == "" && cmd.NArg() == 0:
		return fmt.Errorf("kick: name the sessions: postern kick ID (IDs from postern sessions), or --%s NAME", flagSessionUser)
	}
	var ids []uint64
	for _, a := range cmd.Args().Slice() {
		id, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return fmt.Errorf("kick: session ID %q is not a number (IDs are the first column of postern sessions)", a)
		}
		ids = append(ids, id)
	}
	c, err := adminClient(cmd)
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if user != "" {
		n, err := c.KickUser(ctx, user)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("kick: user %s has no live session", user)
		}
		fmt.Fprintf(w, "kicked %d session(s) of %s\n", n, user)
		return nil
	}
	var errs []error
	for _, id := range ids {
		if err := c.Kick(ctx, id); err != nil {
			var se *admin.StatusError
			if errors.As(err, &se) && se.Status == http.StatusNotFound {
				err = fmt.Errorf("kick: no live session with ID %d (list them with postern sessions)", id)
			}
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(w, "kicked session %d\n", id)
	}
	return errors.Join(errs...)
}
