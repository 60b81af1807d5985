package compliance

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/patchd/patchd/agent/uploads"
)

// Sender delivers one report for an instance.
type Sender interface {
	Put(ctx context.Context, instanceID string, r Report) error
}

// SSMSender sends with the SDK's SSM client.
type SSMSender struct {
	client *ssm.Client
	// Region says where the client points, for the log.
	Region string
}

// ConnectOptions find credentials, region and endpoint.
type ConnectOptions struct {
	// IMDSEndpoint is imds.endpoint (empty: $AWS_EC2_METADATA_SERVICE_ENDPOINT,
	// else the SDK's default): the instance role's credentials and the
	// region come from there, as for amazon-ssm-agent.
	IMDSEndpoint string
	// Endpoint is ssm.endpoint (empty: $AWS_ENDPOINT_URL_SSM, else
	// $AWS_ENDPOINT_URL, else the region's endpoint).
	Endpoint string
	// Timeout bounds finding credentials and region.
	Timeout time.Duration
}

// Connect builds the client from the chain an EC2 instance needs (see
// chain.go: credentials from the environment, else the instance role
// through IMDS; the region from the environment, else IMDS) and checks that
// credentials and a region are found. Shared config and credentials files
// (~/.aws) are not read: patchd runs as a root service on EC2 and signs as
// the instance role, like amazon-ssm-agent, and the SDK's config module,
// which reads them, costs every start ~3 MiB RSS whether or not ssm.report
// is on. Retries stay with the outbox, not the SDK, so a throttled call
// never multiplies.
func Connect(ctx context.Context, o ConnectOptions) (*SSMSender, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	c := newChain(o.IMDSEndpoint)
	region, err := c.region(ctx)
	if err != nil {
		return nil, err
	}
	creds, err := c.credentials(ctx)
	if err != nil {
		return nil, err
	}
	client := ssm.New(ssm.Options{
		Region:       region,
		Credentials:  creds,
		BaseEndpoint: ssmEndpoint(o.Endpoint),
		Retryer:      aws.NopRetryer{},
	})
	return &SSMSender{client: client, Region: region}, nil
}

// Put sends r as the complete set of the instance's Custom:patchd items.
func (s *SSMSender) Put(ctx context.Context, instanceID string, r Report) error {
	items := make([]types.ComplianceItemEntry, 0, len(r.Items))
	for _, it := range r.Items {
		items = append(items, types.ComplianceItemEntry{
			Id: aws.String(it.ID), Title: aws.String(it.Title), Severity: types.ComplianceSeverity(it.Severity),
			Status: types.ComplianceStatus(it.Status), Details: it.Details,
		})
	}
	_, err := s.client.PutComplianceItems(ctx, &ssm.PutComplianceItemsInput{
		ComplianceType:  aws.String(Type),
		ResourceId:      aws.String(instanceID),
		ResourceType:    aws.String("ManagedInstance"),
		UploadType:      types.ComplianceUploadTypeComplete,
		ItemContentHash: aws.String(r.Hash()),
		ExecutionSummary: &types.ComplianceExecutionSummary{
			ExecutionTime: aws.Time(r.ExecutionTime),
			ExecutionId:   aws.String(r.ExecutionID),
			ExecutionType: aws.String(r.ExecutionType),
		},
		Items: items,
	})
	return err
}

// Classify maps a send error to a failure reason and whether trying again
// can help.
func Classify(err error) (reason string, retry bool) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "Throttling":
			return uploads.ReasonThrottled, true
		case "AccessDeniedException", "UnauthorizedOperation", "AccessDenied":
			return uploads.ReasonAccessDenied, false
		case "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException", "InvalidClientTokenId":
			// Credentials rotate: the next try signs with fresh ones.
			return uploads.ReasonCredentials, true
		}
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
			return uploads.ReasonServerError, true
		}
		if ae.ErrorFault() == smithy.FaultServer {
			return uploads.ReasonServerError, true
		}
		return uploads.ReasonInvalid, false
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		if re.HTTPStatusCode() >= 500 {
			return uploads.ReasonServerError, true
		}
		if re.HTTPStatusCode() == http.StatusOK {
			return uploads.ReasonServerError, true // an answer that does not decode
		}
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return uploads.ReasonNetwork, true
	}
	var de *smithy.DeserializationError
	if errors.As(err, &de) {
		return uploads.ReasonServerError, true
	}
	return uploads.ReasonNetwork, true
}
