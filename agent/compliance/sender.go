package compliance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
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
	// Region and Source say where the client points, for the log.
	Region string
}

// ConnectOptions find credentials, region and endpoint.
type ConnectOptions struct {
	// IMDSEndpoint is imds.endpoint (empty: $AWS_EC2_METADATA_SERVICE_ENDPOINT,
	// else the SDK's default): the instance role's credentials and the
	// region come from there, as for amazon-ssm-agent.
	IMDSEndpoint string
	// Endpoint is ssm.endpoint (empty: $AWS_ENDPOINT_URL_SSM, else the
	// region's endpoint).
	Endpoint string
	// Timeout bounds finding credentials and region.
	Timeout time.Duration
}

// Connect builds the client with the SDK's default chain (environment,
// shared files, the instance role through IMDS) and checks that credentials
// and a region are found; retries stay with the outbox, not the SDK, so a
// throttled call never multiplies.
func Connect(ctx context.Context, o ConnectOptions) (*SSMSender, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	imdsEndpoint := o.IMDSEndpoint
	if imdsEndpoint == "" {
		imdsEndpoint = os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		// The region from IMDS when neither AWS_REGION nor a profile sets
		// it; the IMDS client the SDK builds for that alone does not read
		// the endpoint variable, so it is handed one that does.
		config.WithEC2IMDSRegion(func(u *config.UseEC2IMDSRegion) {
			u.Client = imds.New(imds.Options{Endpoint: imdsEndpoint})
		}),
	}
	if o.IMDSEndpoint != "" {
		opts = append(opts, config.WithEC2IMDSEndpoint(o.IMDSEndpoint))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: not on EC2 (IMDS has none) and AWS_REGION is not set")
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return nil, fmt.Errorf("no AWS credentials (instance role through IMDS, environment or shared files): %w", err)
	}
	client := ssm.NewFromConfig(cfg, func(so *ssm.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
	})
	return &SSMSender{client: client, Region: cfg.Region}, nil
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
