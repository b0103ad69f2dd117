package config

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// docDefault is how the README writes d's default: DefaultText, or the
// value in backticks.
func docDefault(d Setting) string {
	if d.DocDefault != "" {
		return d.DocDefault
	}
	if d.DefaultText != "" {
		return d.DefaultText
	}
	if d.Default == "" {
		return "" // an empty cell: nothing by default
	}
	return "`" + shortDuration(fmt.Sprint(d.Default)) + "`"
}

// tomlDefault is how config.toml.example writes d's default.
func tomlDefault(d Setting) string {
	if d.TOMLDefault != "" {
		return d.TOMLDefault
	}
	switch d.Kind {
	case KindStrings:
		quoted := []string{}
		for _, s := range d.Default.([]string) {
			quoted = append(quoted, fmt.Sprintf("%q", s))
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	case KindMap:
		return "{}"
	case KindString:
		return fmt.Sprintf("%q", d.Default)
	case KindDuration:
		if _, err := time.ParseDuration(d.DefaultText); err == nil {
			// A zero Default standing for a default written out
			// (limits.default_lifetime).
			return fmt.Sprintf("%q", d.DefaultText)
		}
		return fmt.Sprintf("%q", d.Default.(time.Duration).String())
	case KindFloat:
		return strconv.FormatFloat(d.Default.(float64), 'f', 1, 64)
	}
	return fmt.Sprint(d.Default)
}

// shortDuration writes "2m0s" as the README does, "2m".
func shortDuration(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// exampleTable matches a [table] line, exampleKey a commented-out setting.
var (
	exampleTable = regexp.MustCompile(`^\[([a-z_.]+)\]`)
	exampleKey   = regexp.MustCompile(`^# ?([a-z_]+) = (.*)$`)
	readmeRow    = regexp.MustCompile("^\\| (?:`--([a-z0-9-]+)[^`]*`[^|]*)?\\| `(?:\\[([a-z_]+)\\] )?([a-z_]+)` \\|([^|]*)\\|")
)

// documentedFamily says which documented keys must be declared: every
// key of the file (all are declared).
func documentedFamily(string) bool { return true }

// checkDocs returns what README and the example get wrong about decls:
// a declaration without its README row (flag, key, default) or its
// "# key = default" line in the right table, and a documented key of a
// declared family that is not declared.
func checkDocs(decls []Setting, readme, example string) []string {
	rows := map[string][2]string{} // key -> flag, default column
	for _, line := range strings.Split(readme, "\n") {
		if m := readmeRow.FindStringSubmatch(line); m != nil {
			key := m[3]
			if m[2] != "" {
				key = m[2] + "." + m[3]
			}
			rows[key] = [2]string{m[1], strings.TrimSpace(m[4])}
		}
	}
	lines := map[string]string{} // key -> value as written
	table := ""
	for _, line := range strings.Split(example, "\n") {
		if m := exampleTable.FindStringSubmatch(line); m != nil {
			table = m[1]
		} else if m := exampleKey.FindStringSubmatch(line); m != nil {
			key := m[1]
			if table != "" {
				key = table + "." + key
			}
			lines[key] = strings.TrimSpace(m[2])
		}
	}
	var out []string
	declared := map[string]bool{}
	for _, d := range decls {
		declared[d.Key] = true
		row, ok := rows[d.Key]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("README: no flag table row for %s", d.Key))
		case row[0] != d.Flag:
			out = append(out, fmt.Sprintf("README: %s documented with --%s, declared --%s", d.Key, row[0], d.Flag))
		case row[1] != docDefault(d):
			out = append(out, fmt.Sprintf("README: %s default %s, declared %s", d.Key, row[1], docDefault(d)))
		}
		v, ok := lines[d.Key]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("config.toml.example: no \"# %s = %s\" line", d.Key, tomlDefault(d)))
		case v != tomlDefault(d) && strings.Trim(v, `"`) != shortDuration(strings.Trim(tomlDefault(d), `"`)):
			out = append(out, fmt.Sprintf("config.toml.example: %s = %s, declared default %s", d.Key, v, tomlDefault(d)))
		}
	}
	for key := range rows {
		if documentedFamily(key) && !declared[key] {
			out = append(out, fmt.Sprintf("README: %s documented but not declared", key))
		}
	}
	for key := range lines {
		if documentedFamily(key) && !declared[key] {
			out = append(out, fmt.Sprintf("config.toml.example: %s documented but not declared", key))
		}
	}
	return out
}

// TestDocsMatchDeclarations checks README's flag table and
// config.toml.example against Settings.
func TestDocsMatchDeclarations(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkDocs(Settings(), string(readme), string(example)) {
		t.Error(p)
	}
}
