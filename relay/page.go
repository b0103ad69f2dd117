package relay

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
)

// maxPageResponse bounds what WebConfig.Page may answer: the self-test page
// is a few tens of kilobytes.
const maxPageResponse = 256 << 10

// pageWriter collects what WebConfig.Page writes, so it can be sent over
// the raw connection servePage holds in one HTTP/1.1 response.
type pageWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *pageWriter) Header() http.Header { return w.header }

func (w *pageWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *pageWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.body.Len()+len(b) > maxPageResponse {
		return 0, http.ErrContentLength
	}
	return w.body.Write(b)
}

// servePageHandler answers req with the configured page handler (WebConfig.Page)
// on conn, as one Connection: close response.
func (s *Server) servePageHandler(conn net.Conn, req *http.Request, client netip.AddrPort) error {
	req.RemoteAddr = client.String()
	w := &pageWriter{header: http.Header{}}
	s.cfg.Web.Page.ServeHTTP(w, req)
	w.WriteHeader(http.StatusOK)
	w.header.Set("Content-Length", strconv.Itoa(w.body.Len()))
	w.header.Set("Connection", "close")
	resp := &http.Response{
		StatusCode: w.status, ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header, ContentLength: int64(w.body.Len()),
		Body: io.NopCloser(&w.body), Request: req, Close: true,
	}
	bw := bufio.NewWriter(conn)
	if err := resp.Write(bw); err != nil {
		return err
	}
	return bw.Flush()
}
