// Package provider maps the Terraform TLS provider's resources and data sources to the tokens of
// the pulumi-tls package, which the pulumi_tls SDKs address.
package provider

import (
	_ "embed"

	"github.com/hashicorp/terraform-provider-tls/shim"
	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
)

// Version is set with -ldflags.
var Version = "0.0.0-dev"

//go:embed bridge-metadata.json
var metadata []byte

func resource(file, name string) tokens.Type { return tokens.Type("tls:index/" + file + ":" + name) }

func function(name string) tokens.ModuleMember {
	return tokens.ModuleMember("tls:index/" + name + ":" + name)
}

// Info describes the provider to the bridge.
func Info() tfbridge.ProviderInfo {
	return tfbridge.ProviderInfo{
		P:            pf.ShimProvider(shim.NewProvider()),
		Name:         "tls",
		Description:  "A Pulumi package to create TLS resources in Pulumi programs.",
		License:      "Apache-2.0",
		GitHubOrg:    "hashicorp",
		Version:      Version,
		MetadataInfo: tfbridge.NewProviderMetadata(metadata),
		Resources: map[string]*tfbridge.ResourceInfo{
			"tls_cert_request":        {Tok: resource("certRequest", "CertRequest")},
			"tls_locally_signed_cert": {Tok: resource("locallySignedCert", "LocallySignedCert")},
			"tls_private_key":         {Tok: resource("privateKey", "PrivateKey")},
			"tls_self_signed_cert":    {Tok: resource("selfSignedCert", "SelfSignedCert")},
		},
		DataSources: map[string]*tfbridge.DataSourceInfo{
			"tls_public_key":  {Tok: function("getPublicKey")},
			"tls_certificate": {Tok: function("getCertificate")},
		},
		EnableZeroDefaultSchemaVersion: true,
	}
}
