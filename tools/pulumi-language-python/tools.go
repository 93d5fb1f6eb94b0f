//go:build tools

// Package tools pins Pulumi's Python language host as a build dependency.
package tools

import _ "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3"
