package turntest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// VethHost is another host for a test: a network namespace NS of the
// test's own behind a veth pair, Host its end here and Guest the end in
// NS, on subnet 10.254.N.0/24 and fd54:N::/64 (.1 and ::1 here, .2 and
// ::2 there). Sends from NS compute their UDP checksums, as datagrams
// from a network card carry them: a veth sender otherwise leaves them to
// the device (CHECKSUM_PARTIAL).
type VethHost struct {
	NS, Host, Guest string
	// Here4, There4, Here6 and There6 are the two ends' addresses.
	Here4, There4, Here6, There6 netip.Addr
}

// NewVethHost makes a VethHost on subnet n (1-254: each test binary that
// runs beside another takes its own), gone when the test ends. It skips
// the test where that cannot be done (not root, no ip from iproute2).
func NewVethHost(t testing.TB, n int) *VethHost {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip (Debian package iproute2)")
	}
	pid := os.Getpid()
	h := &VethHost{
		NS: fmt.Sprintf("vethtest%d-%d", pid, n), Host: fmt.Sprintf("vh%d", pid), Guest: fmt.Sprintf("vg%d", pid),
		Here4: netip.AddrFrom4([4]byte{10, 254, byte(n), 1}), There4: netip.AddrFrom4([4]byte{10, 254, byte(n), 2}),
		Here6: netip.MustParseAddr(fmt.Sprintf("fd54:%x::1", n)), There6: netip.MustParseAddr(fmt.Sprintf("fd54:%x::2", n)),
	}
	Run(t, "ip", "netns", "add", h.NS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", h.NS).Run() })
	Run(t, "ip", "link", "add", h.Host, "type", "veth", "peer", "name", h.Guest)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", h.Host).Run() })
	Run(t, "ip", "link", "set", h.Guest, "netns", h.NS)
	Run(t, "ip", "addr", "add", h.Here4.String()+"/24", "dev", h.Host)
	Run(t, "ip", "addr", "add", h.Here6.String()+"/64", "dev", h.Host, "nodad")
	Run(t, "ip", "link", "set", h.Host, "up")
	Run(t, "ip", "-n", h.NS, "addr", "add", h.There4.String()+"/24", "dev", h.Guest)
	Run(t, "ip", "-n", h.NS, "addr", "add", h.There6.String()+"/64", "dev", h.Guest, "nodad")
	Run(t, "ip", "-n", h.NS, "link", "set", h.Guest, "up")
	h.Do(t, func() {
		if err := DisableTxChecksum(h.Guest); err != nil {
			t.Fatal(err)
		}
	})
	return h
}

// Do runs fn on a thread in the namespace: the sockets it opens belong
// there, and stay there when other goroutines use them.
func (h *VethHost) Do(t testing.TB, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + h.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // the thread is in the wrong namespace: do not let it go back to the pool
		}
	}()
	fn()
}

// Run runs a command of the test's network set-up, failing the test on
// an error with what it printed.
func Run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}
