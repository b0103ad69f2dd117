//go:build !race

package relay

// raceEnabled reports whether the race detector is on: it makes sync.Pool
// drop items at random (crypto/tls takes its record buffers from one), so
// allocation counts through TLS are meaningless.
const raceEnabled = false
