//go:build tools

// Package tools pins VictoriaLogs (the local stack's log store) as a build dependency of this module.
package tools

import _ "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"
