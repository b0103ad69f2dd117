package config

import "testing"

func TestKeyLines(t *testing.T) {
	text := `realm = "r"  # comment
"quoted.key" = 1
[auth]
secrets = [
  "abc=",
  "x = y",
]
note = """
fake = 1
"""
[ relay ]
a.b = 2
'lit' = 3
[[arr]]
k = 1
`
	lines := KeyLines(text)
	for key, want := range map[string]int{
		"realm": 1, "quoted.key": 2, "auth": 3, "auth.secrets": 4, "auth.note": 8,
		"relay": 11, "relay.a.b": 12, "relay.lit": 13, "arr": 14, "arr.k": 15,
	} {
		if got := lines[key]; got != want {
			t.Errorf("line of %s = %d, want %d", key, got, want)
		}
	}
	for _, key := range []string{"auth.fake", "fake", "auth.x"} {
		if l, ok := lines[key]; ok {
			t.Errorf("%s found on line %d: it is inside a string", key, l)
		}
	}
}
