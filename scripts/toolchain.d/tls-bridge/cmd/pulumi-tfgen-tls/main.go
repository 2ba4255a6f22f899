// Command pulumi-tfgen-tls writes the package schema and the bridge metadata.
package main

import (
	pftfgen "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"

	"homelab-kubelet/toolchain/pulumi-resource-tls/provider"
)

func main() { pftfgen.Main("tls", provider.Info()) }
