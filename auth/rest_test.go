package auth

import (
	"testing"
)

func TestParseREST(t *testing.T) {
	tests := []struct {
		in     string
		ok     bool
		expiry int64
		user   string
	}{
		{"1750000000:alice", true, 1750000000, "alice"},
		{"1750000000", true, 1750000000, "1750000000"},
		{"1750000000:", true, 1750000000, "1750000000:"},
		{"1750000000:room:42", true, 1750000000, "room:42"},
		{"1750000000:42", true, 1750000000, "42"},
		{"0001750000000:alice", true, 1750000000, "alice"},
		{"0", true, 0, "0"},
		{"9223372036854775807:max", true, 9223372036854775807, "max"},
		{"alice:1750000000", true, 1750000000, "alice"},
		{":1750000000", true, 1750000000, ":1750000000"},
		{"9223372036854775808:overflow", false, 0, ""},
		{"99999999999999999999", false, 0, ""},
		{"alice", false, 0, ""},
		{"", false, 0, ""},
		{":", false, 0, ""},
		{"alice:bob", false, 0, ""},
		{"alice:1750000000:x", false, 0, ""},
		{"+1750000000:alice", false, 0, ""},
		{"-1:alice", false, 0, ""},
		{" 1750000000:alice", false, 0, ""},
		{"1750000000 :alice", false, 0, ""},
		{"1750000000.5:alice", false, 0, ""},
		{"0x10:alice", false, 0, ""},
		{"\u0661\u0662:alice", false, 0, ""}, // Arabic-Indic digits are not digits here
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseREST(tt.in)
			if ok != tt.ok {
				t.Fatalf("parseREST(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if ok && (got.expiry != tt.expiry || got.user != tt.user) {
				t.Fatalf("parseREST(%q) = {%d, %q}, want {%d, %q}", tt.in, got.expiry, got.user, tt.expiry, tt.user)
			}
		})
	}
}
