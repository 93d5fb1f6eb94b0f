//go:build tools

// Package tools pins Jaeger as a build dependency of this module.
package tools

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
