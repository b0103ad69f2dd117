//go:build !linux

package relay

import "net"

// uringBuilt: io_uring is Linux's.
const uringBuilt = false

// uringPool is never made off Linux.
type uringPool struct{}

func newUringPool(*Server, string) (*uringPool, error) { return nil, nil }

func (p *uringPool) serve(*peerReader, *net.UDPConn) bool { return false }

func (p *uringPool) stop() {}

func (p *uringPool) start() bool { return false }

func (p *uringPool) listenerFD(*net.UDPConn) (int, error) { return -1, nil }

func (p *uringPool) forget(*net.UDPConn) {}

func (p *uringPool) serveListener(*udpSocket, *listenerReader) bool { return false }
