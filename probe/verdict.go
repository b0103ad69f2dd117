package probe

import "strings"

// The verdict words: what the self-test page (package selftest) says to a
// person about the doors it tried from their browser. They live here, next
// to Doors, so that `postern probe` and the page describe a network alike.
const (
	// WordCallsWork is the verdict when a UDP door relays: calls get the
	// fastest path.
	WordCallsWork = "calls will work"
	// WordCallsWorkOnlyOver starts the verdict when only TCP or TLS doors
	// relay, followed by their names ("calls will work only over TLS 443").
	WordCallsWorkOnlyOver = "calls will work only over "
	// WordCallsFail starts the verdict when no door relays, followed by the
	// doors to ask for.
	WordCallsFail = "calls will fail: ask your IT to allow "
	// WordDoorWorks and WordDoorFails fill a door's row.
	WordDoorWorks = "works"
	WordDoorFails = "blocked"
	// WordAnd joins door names in a verdict.
	WordAnd = " or "
)

// VerdictOf is the verdict on doors, where works[i] says whether doors[i]
// relayed. With no door working it asks for the first door (the fastest)
// and the last (the one that passes the strictest firewalls).
func VerdictOf(doors []Door, works []bool) string {
	var ok []string
	for i, d := range doors {
		if i < len(works) && works[i] {
			if d.Transport == UDP {
				return WordCallsWork
			}
			ok = append(ok, d.Name)
		}
	}
	if len(ok) > 0 {
		return WordCallsWorkOnlyOver + strings.Join(ok, WordAnd)
	}
	if len(doors) == 0 {
		return WordCallsFail
	}
	ask := []string{doors[0].Name}
	if last := doors[len(doors)-1].Name; last != ask[0] {
		ask = append(ask, last)
	}
	return WordCallsFail + strings.Join(ask, WordAnd)
}
