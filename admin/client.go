package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Client talks to an admin listener: what `postern sessions` and
// `postern kick` use.
type Client struct {
	// Addr is the admin listener's HOST:PORT, or a base URL
	// (http://HOST:PORT); DefaultAddr when empty.
	Addr string
	// Token is sent as a bearer token when set.
	Token string
	// HTTP is the client to use; one with a 10 s timeout when nil.
	HTTP *http.Client
}

// Sessions lists the live sessions, of user only when user is non-empty.
func (c *Client) Sessions(ctx context.Context, user string) ([]Session, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	var list SessionList
	if err := c.do(ctx, http.MethodGet, "/api/sessions", q, &list); err != nil {
		return nil, err
	}
	return list.Sessions, nil
}

// Kick ends the session with the given ID.
func (c *Client) Kick(ctx context.Context, id uint64) error {
	var res KickResult
	return c.do(ctx, http.MethodDelete, "/api/sessions/"+strconv.FormatUint(id, 10), nil, &res)
}

// KickUser ends every session of user and returns how many it ended.
func (c *Client) KickUser(ctx context.Context, user string) (int, error) {
	if user == "" {
		return 0, errors.New("admin: kick: no user named")
	}
	var res KickResult
	err := c.do(ctx, http.MethodDelete, "/api/sessions", url.Values{"user": {user}}, &res)
	return res.Kicked, err
}

// StatusError is an error answer of the admin API.
type StatusError struct {
	Status  int    // HTTP status code
	Message string // the API's explanation
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("admin API: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// baseURL returns the URL the API paths are appended to.
func (c *Client) baseURL() string {
	addr := c.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	if strings.Contains(addr, "://") {
		return strings.TrimSuffix(addr, "/")
	}
	return "http://" + addr
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	u := c.baseURL() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w (is postern serve running with its admin listener there? set --admin to its address)", c.baseURL(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(body))
		}
		return &StatusError{Status: resp.StatusCode, Message: eb.Error}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin API: undecodable answer: %w", err)
	}
	return nil
}

// Dialable turns a listen address into one to dial: a wildcard host (all
// addresses) becomes loopback.
func Dialable(addr string) string {
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

// WriteSessions writes list as the aligned table of `postern sessions`.
func WriteSessions(w io.Writer, list []Session) error {
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

// WriteFleetSessions writes the sessions of a fleet's nodes as the
// aligned table of `postern sessions --fleet`: each session's ID is
// NODE/ID, as kick --fleet takes it.
func WriteFleetSessions(w io.Writer, lists []SessionList) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE/ID\tUSER\tCLIENT\tTRANSPORT\tRELAYED\tAGE\tLEFT\tTO PEER\tTO CLIENT")
	for _, l := range lists {
		for _, s := range l.Sessions {
			fmt.Fprintf(tw, "%s/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Node, s.ID, s.User, s.Client, s.Transport, s.Relayed,
				seconds(s.AgeSeconds), seconds(s.LifetimeLeftSeconds), humanBytes(s.ToPeer.Bytes), humanBytes(s.ToClient.Bytes))
		}
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
