package ssm

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/patchd/patchd/agent/safeopen"
)

// The types below mirror the document state file amazon-ssm-agent writes
// (agent/contracts/document.go and plugin.go in github.com/aws/amazon-ssm-agent).
// The agent marshals its structs without tags, so the JSON keys are the Go
// field names (odd spellings such as ClientId and Id included); only
// PluginResult carries lowerCamel json tags. The same types
// are used by ssmsim to write files, so reader and writer cannot drift.

// Result status values (agent/contracts/model.go, ResultStatus).
const (
	StatusNotStarted       = "NotStarted"
	StatusInProgress       = "InProgress"
	StatusSuccess          = "Success"
	StatusSuccessAndReboot = "SuccessAndReboot"
	StatusPassedAndReboot  = "PassedAndReboot"
	StatusFailed           = "Failed"
	StatusCancelled        = "Cancelled"
	StatusTimedOut         = "TimedOut"
	StatusSkipped          = "Skipped"
	StatusTestFailure      = "TestFailure"
	StatusTestPass         = "TestPass"
)

// Document types (agent/contracts/document.go, DocumentType). The agent
// spells the cancel type "CancelComamnd"; it is kept as written.
const (
	TypeSendCommand   = "SendCommand"
	TypeCancelCommand = "CancelComamnd"
	TypeAssociation   = "Association"
	TypeStartSession  = "StartSession"
)

// DocumentState is one state file.
type DocumentState struct {
	DocumentInformation        DocumentInfo
	DocumentType               string
	SchemaVersion              string
	InstancePluginsInformation []PluginState
	CancelInformation          CancelCommandInfo
	IOConfig                   IOConfiguration
	UpstreamServiceName        string
}

// DocumentInfo is the document's identity and overall status.
type DocumentInfo struct {
	// DocumentID is the file name: the CommandID, or AssociationID.RunID.
	DocumentID      string
	CommandID       string
	AssociationID   string
	InstanceID      string
	MessageID       string
	RunID           string
	CreatedDate     string
	DocumentName    string
	DocumentVersion string
	DocumentStatus  string
	// RunCount grows by one each time the agent resumes the document after
	// a restart or reboot.
	RunCount     int
	ProcInfo     OSProcInfo
	ClientId     string
	RunAsUser    string
	SessionOwner string
}

// OSProcInfo is the document worker process, written when it is launched.
type OSProcInfo struct {
	Pid       int
	StartTime time.Time
}

// PluginState is one step: its configuration (parameters already
// substituted) and its result.
type PluginState struct {
	Configuration Configuration
	// Name is the plugin (action), e.g. aws:runShellScript.
	Name   string
	Result PluginResult
	// Id is the step name for schema 2.x documents, e.g. PatchLinux.
	Id string
}

// Configuration is a step's configuration. Properties holds the step's
// inputs (schema 2.x) or properties (1.x) after parameter substitution.
type Configuration struct {
	Settings                    any
	Properties                  any
	OutputS3KeyPrefix           string
	OutputS3BucketName          string
	S3EncryptionEnabled         bool
	CloudWatchLogGroup          string
	CloudWatchEncryptionEnabled bool
	CloudWatchStreamingEnabled  bool
	OrchestrationDirectory      string
	MessageId                   string
	BookKeepingFileName         string
	PluginName                  string
	PluginID                    string
	DefaultWorkingDirectory     string
	Preconditions               map[string][]PreconditionArgument
	IsPreconditionEnabled       bool
	CurrentAssociations         []string
	SessionId                   string
	ClientId                    string
	KmsKeyId                    string
	RunAsEnabled                bool
	RunAsUser                   string
	ShellProfile                ShellProfileConfig
	SessionOwner                string
	UpstreamServiceName         string
}

// PreconditionArgument is a precondition operand before and after
// parameter substitution.
type PreconditionArgument struct {
	InitialArgumentValue  string
	ResolvedArgumentValue string
}

// ShellProfileConfig is the session shell profile (empty for commands).
type ShellProfileConfig struct {
	Windows string `json:"windows" yaml:"windows"`
	Linux   string `json:"linux" yaml:"linux"`
}

// PluginResult is a step's result; the agent tags these keys lowerCamel.
type PluginResult struct {
	PluginID           string    `json:"pluginID"`
	PluginName         string    `json:"pluginName"`
	Status             string    `json:"status"`
	Code               int       `json:"code"`
	Output             any       `json:"output"`
	StartDateTime      time.Time `json:"startDateTime"`
	EndDateTime        time.Time `json:"endDateTime"`
	OutputS3BucketName string    `json:"outputS3BucketName"`
	OutputS3KeyPrefix  string    `json:"outputS3KeyPrefix"`
	StepName           string    `json:"stepName"`
	Error              string    `json:"error"`
	StandardOutput     string    `json:"standardOutput"`
	StandardError      string    `json:"standardError"`
}

// CancelCommandInfo is set for cancel documents only.
type CancelCommandInfo struct {
	CancelMessageID string
	CancelCommandID string
	Payload         string
	DebugInfo       string
}

// IOConfiguration says where the document's output goes.
type IOConfiguration struct {
	OrchestrationDirectory string
	OutputS3BucketName     string
	OutputS3KeyPrefix      string
	CloudWatchConfig       CloudWatchConfiguration
}

// CloudWatchConfiguration is the CloudWatch output of a command.
type CloudWatchConfiguration struct {
	LogGroupName              string
	LogStreamPrefix           string
	LogGroupEncryptionEnabled bool
}

// ErrEmptyState is returned for a file of zero bytes or only white space:
// the agent truncates the file before it writes the new content.
var ErrEmptyState = errors.New("state file is empty")

// ParseState decodes a state file. Unknown keys are ignored (newer agents
// add fields); a truncated or malformed file is an error.
func ParseState(data []byte) (*DocumentState, error) {
	empty := true
	for _, c := range data {
		if c != ' ' && c != '\n' && c != '\r' && c != '\t' {
			empty = false
			break
		}
	}
	if empty {
		return nil, ErrEmptyState
	}
	var s DocumentState
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// MaxStateFileSize bounds a state file of the agent. A real one holds a
// document and its plugins' truncated output, a few hundred KiB at most; a
// bigger one is refused before it is read rather than decoded at five times
// its size in memory.
const MaxStateFileSize = 16 << 20

func stateTooLarge(path string) error {
	return fmt.Errorf("state file %s is larger than %s, far more than the agent writes; it is not read: %w",
		path, safeopen.Size(MaxStateFileSize), safeopen.ErrTooLarge)
}

// ReadState reads and decodes the state file at path. A missing file is
// returned as an error that satisfies errors.Is(err, fs.ErrNotExist).
func ReadState(path string) (*DocumentState, error) {
	data, err := safeopen.ReadFile(path, MaxStateFileSize)
	if err != nil {
		return nil, err
	}
	s, err := ParseState(data)
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return s, nil
}

// Marshal encodes a state the way the agent does: compact JSON re-indented
// with two spaces, no trailing newline (agent/jsonutil Marshal + Indent).
func (s *DocumentState) Marshal() ([]byte, error) {
	return json.MarshalIndent(s, "", "  ")
}

// PluginStatuses maps step name (Id, or the plugin name for steps without
// one) to its result status, for steps that have a status.
func (s *DocumentState) PluginStatuses() map[string]string {
	out := map[string]string{}
	for _, p := range s.InstancePluginsInformation {
		if p.Result.Status == "" {
			continue
		}
		out[p.stepName()] = p.Result.Status
	}
	return out
}

func (p PluginState) stepName() string {
	switch {
	case p.Id != "":
		return p.Id
	case p.Configuration.PluginID != "":
		return p.Configuration.PluginID
	default:
		return p.Name
	}
}

// statusKey is what dedup compares: a rewrite that leaves it equal (a new
// ProcInfo, output text) emits no event.
func (s *DocumentState) statusKey() string {
	st := s.PluginStatuses()
	names := make([]string, 0, len(st))
	for n := range st {
		names = append(names, n)
	}
	sort.Strings(names)
	k := fmt.Sprintf("%s|%d", s.DocumentInformation.DocumentStatus, s.DocumentInformation.RunCount)
	for _, n := range names {
		k += "|" + n + "=" + st[n]
	}
	return k
}
