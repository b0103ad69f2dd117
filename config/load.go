package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v3"
)

// ErrUnknownKey is returned (wrapped) by Load for keys no declaration has.
var ErrUnknownKey = errors.New("unknown key")

// Problem is one thing wrong in a file: the key it is about (nil: none
// in particular) and a message that names it.
type Problem struct {
	Key []string
	Msg string
}

// Read decodes the TOML text strictly: the values of the declared keys,
// and a problem for each key no declaration has (with the keys valid
// where it is) and each value of the wrong type. err is a TOML syntax
// error.
func Read(text string) (Values, []Problem, error) { return read(Settings(), text) }

func read(decls []Setting, text string) (Values, []Problem, error) {
	var doc map[string]any
	md, err := toml.Decode(text, &doc)
	if err != nil {
		return nil, nil, err
	}
	problems := unknown(decls, md, doc)
	v, errs := FromTOMLAll(decls, doc)
	for _, err := range errs {
		key, _, _ := strings.Cut(err.Error(), ":")
		problems = append(problems, Problem{Key: strings.Split(key, "."), Msg: err.Error()})
	}
	return v, problems, nil
}

// Load reads the TOML file at path strictly (Read): a key no declaration
// has is an error naming it, so a typo never silently leaves a default in
// force. The values are not validated (Resolve).
func Load(path string) (Values, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config: %w", err)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	v, problems, err := Read(string(data))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var bad []string
	for _, p := range problems {
		if msg, ok := strings.CutPrefix(p.Msg, ErrUnknownKey.Error()+" "); ok {
			bad = append(bad, msg)
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("config %s: %w %s", path, ErrUnknownKey, strings.Join(bad, "; "))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("config %s: %s", path, problems[0].Msg)
	}
	return v, nil
}

// FromCommand reads the --config file named by flag (if given), then the
// declared flags over it, and validates the result (Resolve).
func FromCommand(cmd *cli.Command, flag string) (Values, error) {
	v := Values{}
	if path := cmd.String(flag); path != "" {
		var err error
		if v, err = Load(path); err != nil {
			return nil, err
		}
	}
	decls := Settings()
	if err := FromFlags(decls, cmd, v); err != nil {
		return nil, err
	}
	return Resolve(decls, v)
}

// unknown returns a problem for each key of the file that is neither
// declared, nor inside a declared key (a user of auth.users), nor a table
// holding declared keys; a table holding declared keys must be a table.
// Keys below an unknown one are not reported again.
func unknown(decls []Setting, md toml.MetaData, doc map[string]any) []Problem {
	var out []Problem
	var reported []toml.Key
	for _, k := range md.Keys() {
		if slices.ContainsFunc(reported, func(p toml.Key) bool { return isPrefix(p, k) }) {
			continue
		}
		switch {
		case inDeclared(decls, k):
			continue
		case len(childKeys(decls, k)) > 0:
			if _, ok := lookupPath(doc, k).(map[string]any); !ok {
				reported = append(reported, k)
				out = append(out, Problem{Key: k, Msg: fmt.Sprintf("%s: wrong type: write %s", k, TableHint(k))})
			}
			continue
		}
		reported = append(reported, k)
		table := k[:len(k)-1]
		msg := ErrUnknownKey.Error() + " " + k.String()
		if valid := childKeys(decls, table); len(valid) > 0 {
			where := "at the top level"
			if len(table) > 0 {
				where = "in [" + table.String() + "]"
			}
			msg += fmt.Sprintf(" (keys %s: %s)", where, strings.Join(valid, ", "))
		}
		out = append(out, Problem{Key: k, Msg: msg})
	}
	return out
}

func isPrefix(p, k toml.Key) bool {
	return len(p) <= len(k) && slices.Equal(p, k[:len(p)])
}

// inDeclared reports whether k is a declared key or inside one.
func inDeclared(decls []Setting, k toml.Key) bool {
	for i := 1; i <= len(k); i++ {
		if _, ok := find(decls, k[:i].String()); ok {
			return true
		}
	}
	return false
}

// childKeys returns the names directly below the table path (the top
// level when empty) of the declared keys, in declaration order.
func childKeys(decls []Setting, path toml.Key) []string {
	var out []string
	for _, d := range decls {
		parts := strings.Split(d.Key, ".")
		if len(parts) > len(path) && slices.Equal(parts[:len(path)], path) && !slices.Contains(out, parts[len(path)]) {
			out = append(out, parts[len(path)])
		}
	}
	return out
}

// lookupPath returns the value at k in doc, or nil.
func lookupPath(doc map[string]any, k toml.Key) any {
	var cur any = doc
	for _, name := range k {
		t, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = t[name]
	}
	return cur
}

// TableHint describes what key takes, with an example, for check-config:
// a declared key's type, or a table.
func TableHint(key []string) string {
	decls := Settings()
	if k, ok := KindOf(decls, strings.Join(key, ".")); ok {
		return TypeHint(k)
	}
	if len(childKeys(decls, key)) > 0 {
		return "a table: [" + strings.Join(key, ".") + "] followed by its keys"
	}
	return ""
}
