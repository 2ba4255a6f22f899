// Command pulumi-resource-tls is the tls resource provider plugin.
package main

import (
	"context"
	_ "embed"

	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"

	"homelab-kubelet/toolchain/pulumi-resource-tls/provider"
)

//go:embed schema.json
var schema []byte

func main() {
	pf.Main(context.Background(), "tls", provider.Info(), pf.ProviderMetadata{PackageSchema: schema})
}
