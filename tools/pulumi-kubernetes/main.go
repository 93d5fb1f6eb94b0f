// Command pulumi-resource-kubernetes is the pulumi-kubernetes provider, built from its published
// Go module. Its schema and Terraform mapping are embedded the way the upstream `go generate`
// step does it (scripts/build-k8s-provider.sh writes the *-embed.json files from the module's own
// schema.json and terraform-mapping.json, with the release version set).
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
