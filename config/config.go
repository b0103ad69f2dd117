package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v3"

	"github.com/postern/postern/relay"
)

// Duration is a time.Duration written in TOML as a string such as "10m" or
// "1h30m". A bare number is rejected instead of being read as nanoseconds,
// which is what "max_lifetime = 3600" would otherwise silently mean.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration: write a quoted string such as \"10m\" or \"1h30m\"", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// Kind is the type of a setting's value, in TOML and on the command line.
type Kind int

// Kinds of settings. Values holds a string, bool, time.Duration, int,
// float64, []string or map[string]string.
const (
	KindString Kind = iota
	KindBool
	KindDuration
	KindInt
	KindFloat
	// KindStrings is a TOML array of strings; its flag is repeatable and
	// replaces the file's whole list.
	KindStrings
	// KindMap is a TOML table of strings (user = "password"); its flag is
	// repeatable, NAME:VALUE, and replaces the file's whole table.
	KindMap
)

// Setting declares one setting: everything the flag, the TOML decoder,
// check-config, reload and the docs test know about it comes from here.
type Setting struct {
	// Key is the TOML path, "table.key" ("web.quic_backend").
	Key string
	// Flag is the command-line flag name, without dashes.
	Flag string
	// Kind is the type of the value.
	Kind Kind
	// Default is the value in force when neither the file nor a flag sets
	// one (a string, bool, time.Duration or int, matching Kind).
	Default any
	// DefaultText is how the default is written in --help and the README
	// when it is not the value itself ("off"); empty: the value.
	DefaultText string
	// Placeholder is the flag's value name in --help ("HOST:PORT").
	Placeholder string
	// Usage is the flag's help text.
	Usage string
	// Category groups the flag in --help.
	Category string
	// Restart is true when a SIGHUP reload cannot change the setting: a
	// reload that changes it warns and keeps the running value.
	Restart bool
	// DocDefault is how README's flag table writes the default when it
	// differs from DefaultText; empty: DefaultText (or the value).
	DocDefault string
	// Requires names a setting that must be set (differ from its default)
	// when this one differs from its default; empty: none.
	Requires string
	// RequiresFix ends the error of a missing Requires, saying what to
	// do; empty: "set both or neither".
	RequiresFix string
	// Relate checks the setting against others once each has passed its
	// Check (get returns a resolved value, default filled in); its error
	// is returned as it is, so it names the keys itself.
	Relate func(get func(key string) any) error
	// ZeroIsDefault makes a zero value (0, "0s") stand for the default, as
	// the older settings' schema has always read it.
	ZeroIsDefault bool
	// Check validates a value (the default is never checked); its error
	// is wrapped with the key and the flag.
	Check func(v any) error
	// Set puts the value into the relay's configuration.
	Set func(c *relay.Config, v any)

	// Decode, when set, reads the raw TOML value instead of the Kind's
	// rule (relay.ip takes a string or an array); its error is wrapped
	// with the key.
	Decode func(raw any) (any, error)
	// FlagValue, when set, turns the flag's value into the setting's
	// (--admin "" means off).
	FlagValue func(v any) any
	// EnvVar names an environment variable that gives the flag's value
	// (a token kept out of ps).
	EnvVar string
	// ReloadsWith names a restart-only setting: a reload takes this one
	// only while that one is unchanged (the credentials API's keys follow
	// its listen address).
	ReloadsWith string
	// TOMLDefault is how config.toml.example writes the default when it
	// is not the value ("listen = [the five]"); empty: the value.
	TOMLDefault string
	// TakesFile marks a string flag that names a file (shell completion).
	TakesFile bool
}

// name is how errors name the setting: the key, and its flag if any.
func (d Setting) name() string {
	if d.Flag == "" {
		return d.Key
	}
	return d.Key + " (--" + d.Flag + ")"
}

// Values maps declared keys to their values; a missing key (or a nil
// Values) stands for the default. Resolve keeps only values that differ
// from their default, so that the defaults are always the nil Values.
type Values map[string]any

// get returns the value of d in v, or its default.
func (v Values) get(d Setting) any {
	if x, ok := v[d.Key]; ok {
		return x
	}
	return d.Default
}

// Equal reports whether two values of a setting are the same. Lists and
// maps are compared element by element (== on them would panic).
func Equal(a, b any) bool {
	switch a := a.(type) {
	case []string:
		b, ok := b.([]string)
		return ok && slices.Equal(a, b)
	case map[string]string:
		b, ok := b.(map[string]string)
		return ok && maps.Equal(a, b)
	}
	switch b.(type) {
	case []string, map[string]string:
		return false
	}
	return a == b
}

// Flags returns fresh urfave/cli flags for decls.
func Flags(decls []Setting) []cli.Flag {
	out := make([]cli.Flag, 0, len(decls))
	for _, d := range decls {
		usage := d.Usage
		if d.Placeholder != "" {
			// urfave/cli takes the first `quoted` word as the value's name.
			re := regexp.MustCompile(`\b` + regexp.QuoteMeta(d.Placeholder) + `\b`)
			if loc := re.FindStringIndex(usage); loc != nil {
				usage = usage[:loc[0]] + "`" + d.Placeholder + "`" + usage[loc[1]:]
			}
		}
		if d.Flag == "" {
			continue // a key of the file only
		}
		var src cli.ValueSourceChain
		if d.EnvVar != "" {
			src = cli.EnvVars(d.EnvVar)
		}
		switch d.Kind {
		case KindString:
			out = append(out, &cli.StringFlag{Name: d.Flag, Category: d.Category, Usage: usage, Value: d.Default.(string), DefaultText: d.DefaultText, Sources: src, TakesFile: d.TakesFile})
		case KindBool:
			out = append(out, &cli.BoolFlag{Name: d.Flag, Category: d.Category, Usage: usage, Value: d.Default.(bool), DefaultText: d.DefaultText})
		case KindDuration:
			out = append(out, &cli.DurationFlag{Name: d.Flag, Category: d.Category, Usage: usage, Value: d.Default.(time.Duration), DefaultText: d.DefaultText})
		case KindInt:
			out = append(out, &cli.IntFlag{Name: d.Flag, Category: d.Category, Usage: usage, Value: d.Default.(int), DefaultText: d.DefaultText})
		case KindFloat:
			out = append(out, &cli.FloatFlag{Name: d.Flag, Category: d.Category, Usage: usage, Value: d.Default.(float64), DefaultText: d.DefaultText})
		case KindStrings, KindMap:
			// No Value: --help shows DefaultText, and the file's list
			// stays unless the flag is given.
			out = append(out, &cli.StringSliceFlag{Name: d.Flag, Category: d.Category, Usage: usage, DefaultText: d.DefaultText})
		}
	}
	return out
}

// FromTOML reads the declared keys out of a decoded TOML document (as
// toml.Decode into map[string]any gives it). Values of the wrong type are
// errors naming the key.
func FromTOML(decls []Setting, doc map[string]any) (Values, error) {
	v, errs := FromTOMLAll(decls, doc)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return v, nil
}

// FromTOMLAll is FromTOML that reads every key it can and returns an error
// for each one it cannot (check-config reports them all); a key in error
// is left out of the values.
func FromTOMLAll(decls []Setting, doc map[string]any) (Values, []error) {
	v := Values{}
	var errs []error
	for _, d := range decls {
		raw, ok := lookup(doc, d.Key)
		if !ok {
			continue
		}
		x, err := fromTOML(d, raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		v[d.Key] = x
	}
	return v, errs
}

func fromTOML(d Setting, raw any) (any, error) {
	if d.Decode != nil {
		x, err := d.Decode(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Key, err)
		}
		return x, nil
	}
	// The words check-config has always used for a wrong type.
	bad := func(want string) error {
		return fmt.Errorf("%s: wrong type: write %s (%v is not %s)", d.Key, TypeHint(d.Kind), raw, want)
	}
	switch d.Kind {
	case KindString:
		s, ok := raw.(string)
		if !ok {
			return nil, bad("a string")
		}
		return s, nil
	case KindBool:
		b, ok := raw.(bool)
		if !ok {
			return nil, bad("true or false")
		}
		return b, nil
	case KindDuration:
		s, ok := raw.(string)
		if !ok {
			s = fmt.Sprint(raw)
		}
		var x Duration
		if err := x.UnmarshalText([]byte(s)); err != nil {
			return nil, fmt.Errorf("%s: %w", d.Key, err)
		}
		return time.Duration(x), nil
	case KindInt:
		n, ok := raw.(int64)
		if !ok {
			return nil, bad("an integer")
		}
		return int(n), nil
	case KindFloat:
		switch n := raw.(type) {
		case float64:
			return n, nil
		case int64:
			return float64(n), nil
		}
		return nil, bad("a number")
	case KindStrings:
		list, ok := raw.([]any)
		if !ok {
			return nil, bad("an array of strings")
		}
		out := make([]string, 0, len(list))
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, bad("an array of strings")
			}
			out = append(out, s)
		}
		return out, nil
	case KindMap:
		t, ok := raw.(map[string]any)
		if !ok {
			return nil, bad("a table")
		}
		out := make(map[string]string, len(t))
		for k, x := range t {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%s: wrong type: write %s (the value of %q is not a string)", d.Key, TypeHint(d.Kind), k)
			}
			out[k] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: unknown kind %d", d.Key, d.Kind)
}

// TypeHint describes what a setting of kind k takes in TOML, with an
// example (as check-config explains a wrong type).
func TypeHint(k Kind) string {
	switch k {
	case KindString:
		return "a quoted string"
	case KindBool:
		return "true or false, without quotes"
	case KindDuration:
		return `a quoted duration such as "10m" or "1h30m"`
	case KindInt:
		return "a whole number without quotes"
	case KindFloat:
		return "a number without quotes, such as 10 or 2.5"
	case KindStrings:
		return `an array of strings such as ["a", "b"] (even for one value)`
	case KindMap:
		return `a table such as { alice = "password" }`
	}
	return ""
}

// KindOf returns the kind of the declared key.
func KindOf(decls []Setting, key string) (Kind, bool) {
	d, ok := find(decls, key)
	return d.Kind, ok
}

// lookup finds the dotted key in a decoded TOML document.
func lookup(doc map[string]any, key string) (any, bool) {
	table, name, ok := cut(key)
	if !ok {
		v, ok := doc[key]
		return v, ok
	}
	t, ok := doc[table].(map[string]any)
	if !ok {
		return nil, false
	}
	v, ok := t[name]
	return v, ok
}

// cut splits "table.key" into its table and key.
func cut(key string) (table, name string, ok bool) {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '.' {
			return key[:i], key[i+1:], true
		}
	}
	return "", key, false
}

// find returns the declaration of key.
func find(decls []Setting, key string) (Setting, bool) {
	for _, d := range decls {
		if d.Key == key {
			return d, true
		}
	}
	return Setting{}, false
}

// Declared reports whether key (a TOML path) is declared in decls.
func Declared(decls []Setting, key toml.Key) bool {
	_, ok := find(decls, key.String())
	return ok
}

// KeysIn returns the names of the declared keys of table ("web").
func KeysIn(decls []Setting, table string) []string {
	var out []string
	for _, d := range decls {
		if t, name, _ := cut(d.Key); t == table {
			out = append(out, name)
		}
	}
	return out
}

// FromFlags overrides v with the declared flags given on the command line:
// a flag wins over the file, and a repeatable one replaces the file's whole
// list or table. Its error (a malformed NAME:VALUE) names the flag but
// never echoes the value, which may hold a password.
func FromFlags(decls []Setting, cmd *cli.Command, v Values) error {
	for _, d := range decls {
		if d.Flag == "" || !cmd.IsSet(d.Flag) {
			continue
		}
		var x any
		switch d.Kind {
		case KindString:
			x = cmd.String(d.Flag)
		case KindBool:
			x = cmd.Bool(d.Flag)
		case KindDuration:
			x = cmd.Duration(d.Flag)
		case KindInt:
			x = cmd.Int(d.Flag)
		case KindFloat:
			x = cmd.Float(d.Flag)
		case KindStrings:
			x = slices.Clone(cmd.StringSlice(d.Flag))
		case KindMap:
			m, err := pairs(d, cmd.StringSlice(d.Flag))
			if err != nil {
				return err
			}
			x = m
		}
		if d.FlagValue != nil {
			x = d.FlagValue(x)
		}
		v[d.Key] = x
	}
	return nil
}

// pairs reads the NAME:VALUE values of a KindMap flag. VALUE may hold
// colons; NAME may not. The words come from the Placeholder
// ("NAME:PASSWORD": "empty password").
func pairs(d Setting, values []string) (map[string]string, error) {
	_, what, _ := strings.Cut(d.Placeholder, ":")
	what = strings.ToLower(cmp.Or(what, "value"))
	out := make(map[string]string, len(values))
	for i, v := range values {
		name, value, ok := strings.Cut(v, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("--%s (value %d of %d): no colon: write %s", d.Flag, i+1, len(values), d.Placeholder)
		case name == "":
			return nil, fmt.Errorf("--%s (value %d of %d): empty %s name: write %s", d.Flag, i+1, len(values), d.Flag, d.Placeholder)
		case value == "":
			return nil, fmt.Errorf("--%s %s: empty %s: write %s", d.Flag, name, what, d.Placeholder)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--%s %s: given twice: keep one", d.Flag, name)
		}
		out[name] = value
	}
	return out, nil
}

// Resolve validates the values given and fills in the defaults of the rest.
// Errors name the key and the flag.
func Resolve(decls []Setting, given Values) (Values, error) {
	var out Values
	for _, d := range decls {
		x, ok := given[d.Key]
		if d.ZeroIsDefault && ok && isZero(x) {
			x = d.Default
		}
		if !ok || Equal(x, d.Default) {
			continue
		}
		if d.Check != nil {
			if err := d.Check(x); err != nil {
				var v valueError
				if errors.As(err, &v) {
					return nil, fmt.Errorf("%s %w", d.name(), err)
				}
				return nil, fmt.Errorf("%s: %w", d.name(), err)
			}
		}
		if out == nil {
			out = Values{}
		}
		out[d.Key] = x
	}
	get := func(key string) any { return Get(decls, out, key) }
	for _, d := range decls {
		if d.Relate != nil {
			if err := d.Relate(get); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range decls {
		if d.Requires == "" || Equal(out.get(d), d.Default) {
			continue
		}
		if r, ok := find(decls, d.Requires); ok && Equal(out.get(r), r.Default) {
			fix := d.RequiresFix
			if fix == "" {
				fix = "set both or neither"
			}
			return nil, fmt.Errorf("%s is set but %s is not: %s", d.name(), r.name(), fix)
		}
	}
	return out, nil
}

// isZero reports whether x is the zero value of its kind.
func isZero(x any) bool {
	switch x := x.(type) {
	case int:
		return x == 0
	case time.Duration:
		return x == 0
	case string:
		return x == ""
	case bool:
		return !x
	case float64:
		return x == 0
	case []string:
		return len(x) == 0
	case map[string]string:
		return len(x) == 0
	}
	return false
}

// Get returns the value of the declared key in v, or its default; nil
// when key is not declared.
func Get(decls []Setting, v Values, key string) any {
	d, ok := find(decls, key)
	if !ok {
		return nil
	}
	return v.get(d)
}

// valueError is a Check error that starts with the value ("-1s: write
// ..."): Resolve writes it after the flag without a colon, as the older
// settings' messages are ("web.idle_timeout (--web-idle-timeout) -1s: ...").
type valueError struct{ msg string }

func (e valueError) Error() string { return e.msg }

// valueErrorf formats a valueError.
func valueErrorf(format string, args ...any) error {
	return valueError{fmt.Sprintf(format, args...)}
}

// Apply puts resolved values into the relay's configuration.
func Apply(decls []Setting, v Values, c *relay.Config) {
	for _, d := range decls {
		if d.Set != nil {
			d.Set(c, v.get(d))
		}
	}
}

// RestartChanged names the restart-only settings whose loaded value
// differs from the running one, in declaration order.
func RestartChanged(decls []Setting, running, loaded Values) []string {
	var out []string
	for _, d := range decls {
		if d.Restart && !Equal(running.get(d), loaded.get(d)) {
			out = append(out, d.Key)
		}
	}
	return out
}

// TakeReloadable copies into a fresh copy of running the values of loaded
// that a reload may change.
func TakeReloadable(decls []Setting, running, loaded Values) Values {
	var out Values
	for _, d := range decls {
		x := running.get(d)
		if !d.Restart && !withChanged(decls, d, running, loaded) {
			x = loaded.get(d)
		}
		if Equal(x, d.Default) {
			continue
		}
		if out == nil {
			out = Values{}
		}
		out[d.Key] = x
	}
	return out
}

// withChanged reports whether the setting d reloads with has changed, so
// that d keeps its running value too.
func withChanged(decls []Setting, d Setting, running, loaded Values) bool {
	if d.ReloadsWith == "" {
		return false
	}
	w, ok := find(decls, d.ReloadsWith)
	return ok && !Equal(running.get(w), loaded.get(w))
}

// hostPort checks a HOST:PORT value.
func hostPort(v any) error {
	s := v.(string)
	if s == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: write HOST:PORT, e.g. 127.0.0.1:8443", s)
	}
	if host == "" {
		return fmt.Errorf("%q: name the host, e.g. 127.0.0.1:8443", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: the port must be 1-65535", s)
	}
	return nil
}

// positiveDuration checks a duration that must be above zero.
func positiveDuration(v any) error {
	if d := v.(time.Duration); d <= 0 {
		return fmt.Errorf("%v: write a positive duration such as \"2m\"", d)
	}
	return nil
}

// flowCap checks a cap where negative means no cap and zero is ambiguous.
func flowCap(v any) error {
	if v.(int) == 0 {
		return fmt.Errorf("0: write a positive count, or a negative one for no cap")
	}
	return nil
}

// Subset returns the declarations of keys, for a command that reads only
// part of a file (the minting commands read [ice_servers], not the users
// file). The keys must not be related to others (Relate).
func Subset(keys ...string) []Setting {
	var out []Setting
	for _, k := range keys {
		if d, ok := find(Settings(), k); ok {
			out = append(out, d)
		}
	}
	return out
}
