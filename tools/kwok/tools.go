//go:build tools

// Package tools pins kwok's command as a dependency of this module.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
