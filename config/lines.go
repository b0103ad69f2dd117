package config

import (
	"regexp"
	"strconv"
	"strings"
)

// Lines of keys in a TOML file, for check-config's FILE:LINE messages.

// KeyLine returns the line where key, or the nearest table above it, is
// defined, or 0.
func KeyLine(lines map[string]int, key []string) int {
	for n := len(key); n > 0; n-- {
		if l := lines[strings.Join(key[:n], ".")]; l > 0 {
			return l
		}
	}
	return 0
}

// TOML keys: bare, "basic" or 'literal', dotted.
const keyPart = `(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')`

var (
	keyValueLine = regexp.MustCompile(`^\s*(` + keyPart + `(?:\s*\.\s*` + keyPart + `)*)\s*=`)
	tableLine    = regexp.MustCompile(`^\s*\[\[?\s*(` + keyPart + `(?:\s*\.\s*` + keyPart + `)*)\s*\]\]?\s*(?:#.*)?$`)
	keyPartRE    = regexp.MustCompile(keyPart)
)

// KeyLines maps each key and table of a TOML document that decoded without
// error to the line (from 1) where it is first defined, keys written
// dotted ("relay.ports"). It is a line scanner, not a parser: it skips the
// insides of multi-line strings and does not descend into inline tables,
// which is enough to point at a line.
func KeyLines(text string) map[string]int {
	out := make(map[string]int)
	var table []string
	inString := "" // the delimiter of the multi-line string being skipped
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if inString != "" {
			if strings.Count(line, inString)%2 == 1 {
				inString = ""
			}
			continue
		}
		if m := tableLine.FindStringSubmatch(line); m != nil {
			table = splitKey(m[1])
			record(out, table, n)
		} else if m := keyValueLine.FindStringSubmatch(line); m != nil {
			record(out, append(append([]string(nil), table...), splitKey(m[1])...), n)
		}
		for _, delim := range []string{`"""`, `'''`} {
			if strings.Count(line, delim)%2 == 1 {
				inString = delim
				break
			}
		}
	}
	return out
}

func record(out map[string]int, key []string, line int) {
	k := strings.Join(key, ".")
	if _, ok := out[k]; !ok {
		out[k] = line
	}
}

// splitKey splits a dotted TOML key and unquotes its parts.
func splitKey(k string) []string {
	parts := keyPartRE.FindAllString(k, -1)
	for i, p := range parts {
		if strings.HasPrefix(p, `"`) {
			if u, err := strconv.Unquote(p); err == nil {
				parts[i] = u
			}
		} else if strings.HasPrefix(p, "'") {
			parts[i] = strings.Trim(p, "'")
		}
	}
	return parts
}
