// Package sniff decides what a connection on a stream listener is before
// anything answers it, without consuming a byte: a PROXY protocol header
// (HAProxy's v1/v2, from trusted sources only), then the first byte
// (TLS, plain HTTP, or TURN/TCP), then for TLS the ClientHello (SNI and
// ALPN), which Router turns into a Route: TURN/TLS, the web backend, or
// the built-in page. Package relay runs these steps on each connection's
// goroutine (streamListener.handle):
//
//	accept -> Accept (PROXY) -> Conn.First -> Conn.Hello -> Router.TLS
//	       -> relay: TLS handshake + TURN, forward to backend, or page
//
// Why a package, and connection steps rather than net.Listener wrappers:
// measured on the code it came from, the ClientHello parser and the
// routing rules used nothing of relay.Server, the PROXY step one field
// (Config.ProxyProtocolFrom), and the first-byte step nothing; only what
// follows routing (the TLS handshake with the server's certificates and
// statistics, admission to the web backend, the page) needs the server,
// and stays there. A net.Listener wrapper would sniff inside Accept, where
// one slow client would hold the accept loop (or need goroutines and a
// queue of its own); steps on the connection's goroutine keep that
// isolation and let the caller bound them all with one read deadline.
//
// # Invariants
//
//   - Nothing sniffed is lost: every byte read while inspecting stays in
//     the Conn's buffer, and Conn.Read yields the stream unchanged (also
//     after Hello grew the buffer for a ClientHello larger than it).
//   - A PROXY header is read only from a source in the trusted prefixes;
//     from anyone else a header closes the connection
//     (ErrUntrustedProxyHeader), since it would let a client pose as any
//     address. A trusted source may send none.
//   - ParseClientHello never reads past the records it needs, never trusts
//     a length it has not checked, asks only for more bytes than it has,
//     and bounds the work (at most 32 records, 16 KiB of hello); it agrees
//     with crypto/tls on every hello crypto/tls accepts
//     (FuzzParseClientHello, corpus in testdata/fuzz).
//   - No step waits on its own: the caller's read deadline bounds them.
package sniff
