package compliance

// The credential, region and endpoint chain, built from the SDK's small
// parts instead of its config module: that module links the SSO, SSO OIDC,
// STS and Sign-In clients for chains patchd does not need, and their
// package initialisation costs every start of patchd (the daemon and each
// CLI command) ~3 MiB RSS and ~1 ms, even with ssm.report off.

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	agentimds "github.com/patchd/patchd/agent/imds"
)

// The environment variables the chain reads, named in its errors.
const (
	envAccessKey     = "AWS_ACCESS_KEY_ID"
	envSecretKey     = "AWS_SECRET_ACCESS_KEY"
	envSessionToken  = "AWS_SESSION_TOKEN"
	envRegion        = "AWS_REGION"
	envDefaultRegion = "AWS_DEFAULT_REGION"
	envIMDSDisabled  = "AWS_EC2_METADATA_DISABLED"
	envEndpointSSM   = "AWS_ENDPOINT_URL_SSM"
	envEndpoint      = "AWS_ENDPOINT_URL"
)

// chain finds credentials and the region the way the AWS CLI does on an
// instance without shared files: the environment first, then IMDS.
type chain struct {
	// md is nil when AWS_EC2_METADATA_DISABLED is true.
	md *imds.Client
	// where names the IMDS endpoint in errors.
	where string
}

func newChain(imdsEndpoint string) chain {
	if strings.EqualFold(os.Getenv(envIMDSDisabled), "true") {
		return chain{}
	}
	imdsEndpoint = agentimds.ResolveEndpoint(imdsEndpoint)
	where := imdsEndpoint
	if where == "" {
		where = "http://169.254.169.254"
	}
	return chain{md: imds.New(imds.Options{Endpoint: imdsEndpoint}), where: where}
}

// region is AWS_REGION, else AWS_DEFAULT_REGION, else the instance's.
func (c chain) region(ctx context.Context) (string, error) {
	for _, k := range []string{envRegion, envDefaultRegion} {
		if v := os.Getenv(k); v != "" {
			return v, nil
		}
	}
	if c.md == nil {
		return "", fmt.Errorf("no AWS region: %s is true, so IMDS is not asked; set %s", envIMDSDisabled, envRegion)
	}
	out, err := c.md.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil {
		return "", &missing{fmt.Sprintf("no AWS region: %s and %s are not set and IMDS (%s) has none", envRegion, envDefaultRegion, c.where), err}
	}
	if out.Region == "" {
		return "", fmt.Errorf("no AWS region: %s is not set and IMDS (%s) answered an empty one", envRegion, c.where)
	}
	return out.Region, nil
}

// credentials are the environment's keys, else the instance role's, cached
// until shortly before they expire. The role's are retrieved once here so
// that a missing role shows at connect, not at the first send.
func (c chain) credentials(ctx context.Context) (*aws.CredentialsCache, error) {
	id, secret := os.Getenv(envAccessKey), os.Getenv(envSecretKey)
	if id != "" && secret != "" {
		// Static keys need no retrieval and cannot fail it.
		return aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(id, secret, os.Getenv(envSessionToken))), nil
	}
	if c.md == nil {
		return nil, fmt.Errorf("no AWS credentials: %s is true, so the instance role is not asked; set %s and %s (shared files are not read)",
			envIMDSDisabled, envAccessKey, envSecretKey)
	}
	cache := aws.NewCredentialsCache(ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = c.md }))
	if _, err := cache.Retrieve(ctx); err != nil {
		return nil, &missing{fmt.Sprintf("no AWS credentials: %s and %s are not set and the instance role through IMDS (%s) gave none",
			envAccessKey, envSecretKey, c.where), err}
	}
	return cache, nil
}

// missing is what the chain did not find and why. what alone identifies
// it: the cause's wording varies from one try to the next (the SDK says
// "canceled" or "request canceled" for the same timeout), and the reporter
// logs a wait once per what, not once per wording.
type missing struct {
	what  string
	cause error
}

func (e *missing) Error() string { return e.what + ": " + e.cause.Error() }
func (e *missing) Unwrap() error { return e.cause }

// ssmEndpoint is ssm.endpoint, else AWS_ENDPOINT_URL_SSM, else
// AWS_ENDPOINT_URL; nil lets the SDK's resolver pick the region's.
func ssmEndpoint(setting string) *string {
	for _, v := range []string{setting, os.Getenv(envEndpointSSM), os.Getenv(envEndpoint)} {
		if v != "" {
			return aws.String(v)
		}
	}
	return nil
}
