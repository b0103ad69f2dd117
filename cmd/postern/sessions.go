package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/admin"
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
	addr, token := defaultAdminListen, ""
	if path := cmd.String(flagConfig); path != "" {
		c, err := Load(path)
		if err != nil {
			return nil, err
		}
		switch l := strings.TrimSpace(c.Admin.Listen); {
		case strings.EqualFold(l, "off"):
			if !cmd.IsSet(flagAdmin) {
				return nil, fmt.Errorf("config %s: the admin listener is off (admin.listen = \"off\"): turn it on, or give --%s ADDR", path, flagAdmin)
			}
		case l != "":
			addr = l
		}
		token = c.Admin.Token
	}
	if cmd.IsSet(flagAdmin) {
		addr = cmd.String(flagAdmin)
	}
	if cmd.IsSet(flagAdminToken) {
		token = cmd.String(flagAdminToken)
	}
	if addr == "" || strings.EqualFold(addr, "off") {
		return nil, fmt.Errorf("--%s: give the admin listener's HOST:PORT (default %s)", flagAdmin, defaultAdminListen)
	}
	return &admin.Client{Addr: dialable(addr), Token: token, HTTP: &http.Client{Timeout: 10 * time.Second}}, nil
}

// dialable turns a listen address into one to dial: a wildcard host (all
// addresses) becomes loopback.
func dialable(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
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
	return printSessions(w, list)
}

// printSessions writes list as an aligned table.
func printSessions(w io.Writer, list []admin.Session) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tCLIENT\tTRANSPORT\tLISTENER\tRELAYED\tAGE\tLEFT\tPERMS\tCHANS\tTO PEER\tTO CLIENT")
	for _, s := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n",
			s.ID, s.User, s.Client, s.Transport, s.Listener, s.Relayed,
			seconds(s.AgeSeconds), seconds(s.LifetimeLeftSeconds), len(s.Permissions), len(s.Channels),
			humanBytes(s.ToPeer.Bytes), humanBytes(s.ToClient.Bytes))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the sessions: %w", err)
	}
	return nil
}

// seconds formats a whole number of seconds as a duration: "1h2m3s".
func seconds(n int64) string { return (time.Duration(n) * time.Second).String() }

// humanBytes formats a byte count with a binary unit: "512 B", "1.5 KiB".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
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
