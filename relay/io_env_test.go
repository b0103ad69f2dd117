package relay

import "os"

// POSTERN_TEST_RELAY_IO=epoll (or io_uring) runs the package's tests with
// relay sockets read that way; by default they take Config.IO's default.
func init() { testDefaultIO = os.Getenv("POSTERN_TEST_RELAY_IO") }
