package admin

import _ "embed" // the dashboard's stylesheet and script

// The dashboard's stylesheet and script, inlined into the page (no build
// step, nothing fetched from elsewhere) and allowed by their hashes in the
// Content-Security-Policy. Read-only after init.
var (
	//go:embed web/dashboard.css
	dashboardCSS string
	//go:embed web/dashboard.js
	dashboardJS string
)
