package main

import (
	"fmt"
	"log/slog"

	"github.com/postern/postern/iceapi"
)

// listenAPI binds the credentials API's address (iceapi.Server), or
// returns nil when the API is off. Over HTTPS it serves the relay's
// certificate (UseCertificates); settings has already refused HTTPS without
// one and plain HTTP off loopback (parseAPIListen, loadICE).
func listenAPI(a apiSettings, log *slog.Logger) (*iceapi.Server, error) {
	if a.listen == "" {
		return nil, nil
	}
	s, err := iceapi.Listen(a.addr, a.plain, log)
	if err != nil {
		return nil, fmt.Errorf("credentials_api.listen (--%s) %s: %w: choose a free port or stop the process holding it", flagCredentialsAPI, a.listen, err)
	}
	return s, nil
}
