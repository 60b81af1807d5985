package ssmsim

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/patchd/patchd/agent/ssm"
)

// Spec is a document to submit, with its parameters already substituted
// into the step inputs (the agent substitutes them before it writes the
// state file: agent/framework/docparser/docparser.go).
type Spec struct {
	DocumentName    string
	DocumentVersion string
	// SchemaVersion 2.2 has named steps; 1.2 (AWS-RunShellScript) has one
	// step per plugin, named after the plugin.
	SchemaVersion string
	// CommandID is made up when empty (Run Command).
	CommandID string
	// AssociationID makes this a State Manager run: DocumentType
	// Association, DocumentID <AssociationID>.<RunID>.
	AssociationID string
	// RunID is made up from the clock when empty.
	RunID string
	Steps []Step
}

// Step is one step of the document.
type Step struct {
	Name   string // e.g. PatchLinux; for schema 1.2 the plugin name
	Action string // plugin, e.g. aws:runShellScript
	// Inputs are the step's inputs after substitution (2.2), or for 1.2 the
	// plugin's properties list.
	Inputs any
	// Platform, when set, is the platformType precondition (2.2).
	Platform string
}

func (s Spec) state(a *Agent, now time.Time) *ssm.DocumentState {
	runID := s.RunID
	if runID == "" {
		runID = isoDash(now)
	}
	info := ssm.DocumentInfo{
		InstanceID:      a.InstanceID,
		RunID:           runID,
		CreatedDate:     iso8601(now),
		DocumentName:    s.DocumentName,
		DocumentVersion: s.DocumentVersion,
		DocumentStatus:  ssm.StatusInProgress,
	}
	docType := ssm.TypeSendCommand
	orch := a.OrchestrationRoot()
	if s.AssociationID != "" {
		docType = ssm.TypeAssociation
		info.AssociationID = s.AssociationID
		info.DocumentID = s.AssociationID + "." + runID
		info.MessageID = fmt.Sprintf("aws.ssm.%s.%s", s.AssociationID, a.InstanceID)
		orch = filepath.Join(orch, s.AssociationID, runID)
	} else {
		cmd := s.CommandID
		if cmd == "" {
			cmd = NewCommandID()
		}
		info.CommandID = cmd
		info.DocumentID = cmd
		info.MessageID = fmt.Sprintf("aws.ssm.%s.%s", cmd, a.InstanceID)
		orch = filepath.Join(orch, cmd)
	}
	if info.DocumentVersion == "" {
		info.DocumentVersion = "1"
	}
	schema := s.SchemaVersion
	if schema == "" {
		schema = "2.2"
	}
	st := &ssm.DocumentState{
		DocumentInformation: info,
		DocumentType:        docType,
		SchemaVersion:       schema,
		IOConfig:            ssm.IOConfiguration{OrchestrationDirectory: orch},
		UpstreamServiceName: "MessageGatewayService",
	}
	pre := schema >= "2.2"
	for _, step := range s.Steps {
		cfg := ssm.Configuration{
			Properties:             step.Inputs,
			OrchestrationDirectory: filepath.Join(orch, step.Name),
			MessageId:              info.MessageID,
			BookKeepingFileName:    info.DocumentID,
			PluginName:             step.Action,
			PluginID:               step.Name,
			IsPreconditionEnabled:  pre,
			Preconditions:          map[string][]ssm.PreconditionArgument{},
		}
		if step.Platform != "" {
			cfg.Preconditions["StringEquals"] = []ssm.PreconditionArgument{
				{InitialArgumentValue: "platformType", ResolvedArgumentValue: "platformType"},
				{InitialArgumentValue: step.Platform, ResolvedArgumentValue: step.Platform},
			}
		}
		st.InstancePluginsInformation = append(st.InstancePluginsInformation, ssm.PluginState{
			Configuration: cfg, Name: step.Action, Id: step.Name,
		})
	}
	return st
}

// The scripts below keep only the lines of the public documents that carry
// the parameters patchd reads (the rest, payload download and interpreter
// checks, is elided): AWS-RunPatchBaseline.json as kept in
// github.com/tekumara/aws-ssm-patch-manager, and AWS-ApplyAnsiblePlaybooks as
// described in the Systems Manager user guide.

func patchLinuxScript(step, snapshot, op, overrides, reboot, baseline string) []any {
	return []any{
		"#!/bin/bash",
		"# (payload download and python interpreter selection elided)",
		"echo 'import os",
		"import sys",
		"try:",
		"    import common_startup_entrance",
		fmt.Sprintf(`    common_startup_entrance.execute("os_selector", %q, %q,\`, step, snapshot),
		fmt.Sprintf(`            %q, %q, \`, op, overrides),
		fmt.Sprintf(`            %q, %q)`, reboot, baseline),
		"except Exception as e:",
		"    error_code = 156",
		"    sys.exit(error_code)",
		"' | $PYTHON_CMD",
		"",
		"RETURN_CODE=$?",
		"exit $RETURN_CODE",
	}
}

func patchWindowsScript(snapshot, op, overrides, reboot, baseline string) []any {
	return []any{
		"# (module download and checks elided)",
		fmt.Sprintf("$response = Invoke-PatchBaselineOperation -Operation %s -SnapshotId '%s' -InstallOverrideList '%s' -BaselineOverride '%s' -RebootOption '%s' -InstanceId $env:AWS_SSM_INSTANCE_ID -Region $env:AWS_SSM_REGION_NAME",
			op, snapshot, overrides, baseline, reboot),
		"exit $response.ExitCode",
	}
}

func patchBaselineSteps(op, reboot string) []Step {
	in := func(script []any) map[string]any {
		return map[string]any{"timeoutSeconds": 7200, "runCommand": script}
	}
	return []Step{
		{Name: "PatchWindows", Action: "aws:runPowerShellScript", Platform: "Windows", Inputs: in(patchWindowsScript("", op, "", reboot, ""))},
		{Name: "PatchLinux", Action: "aws:runShellScript", Platform: "Linux", Inputs: in(patchLinuxScript("PatchLinux", "", op, "", reboot, ""))},
		{Name: "PatchMacOS", Action: "aws:runShellScript", Platform: "MacOS", Inputs: in(patchLinuxScript("PatchMacOS", "", op, "", reboot, ""))},
	}
}

// RunPatchBaseline is AWS-RunPatchBaseline with Operation (Scan|Install)
// and RebootOption (RebootIfNeeded|NoReboot).
func RunPatchBaseline(operation, rebootOption string) Spec {
	if rebootOption == "" {
		rebootOption = "RebootIfNeeded"
	}
	return Spec{DocumentName: "AWS-RunPatchBaseline", Steps: patchBaselineSteps(operation, rebootOption)}
}

// RunPatchBaselineAssociation is AWS-RunPatchBaselineAssociation run by a
// State Manager association (DocumentID <AssociationID>.<RunID>). Its steps
// are modelled on AWS-RunPatchBaseline's: the same payload entry call.
func RunPatchBaselineAssociation(associationID, operation, rebootOption string) Spec {
	s := RunPatchBaseline(operation, rebootOption)
	s.DocumentName = "AWS-RunPatchBaselineAssociation"
	s.AssociationID = associationID
	return s
}

// ApplyAnsiblePlaybooks is AWS-ApplyAnsiblePlaybooks with Check True (dry
// run) or False.
func ApplyAnsiblePlaybooks(check bool) Spec {
	c := "False"
	if check {
		c = "True"
	}
	script := []any{
		"#!/bin/bash",
		`if [[ "True" == True ]] ; then`,
		`  echo "Installing and/or updating required tools: Ansible, wget unzip ...." >&2`,
		`  (dependency installation elided)`,
		"fi",
		`echo "Running Ansible in $(pwd)"`,
		`for zip in $(find -iname '*.zip'); do`,
		`  unzip -o $zip`,
		`done`,
		`PlaybookFile="playbook.yml"`,
		`if [ ! -f  "${PlaybookFile}" ] ; then`,
		`  echo "The specified Playbook file doesn't exist in the downloaded bundle. Please review the relative path and file name." >&2`,
		`  exit 2`,
		`fi`,
		fmt.Sprintf(`if [[ "%s" == True ]] ; then`, c),
		`  ansible-playbook -i "localhost," --check -c local -e "SSM=True" "-v" "${PlaybookFile}"`,
		"else",
		`  ansible-playbook -i "localhost," -c local -e "SSM=True" "-v" "${PlaybookFile}"`,
		"fi",
	}
	return Spec{DocumentName: "AWS-ApplyAnsiblePlaybooks", Steps: []Step{
		{Name: "downloadContent", Action: "aws:downloadContent", Inputs: map[string]any{
			"SourceType": "S3", "SourceInfo": `{"path":"https://s3.amazonaws.com/example-bucket/playbook.yml"}`}},
		{Name: "runShellScript", Action: "aws:runShellScript", Inputs: map[string]any{
			"timeoutSeconds": "3600", "runCommand": script}},
	}}
}

// RunShellScript is AWS-RunShellScript (schema 1.2: one plugin, its
// properties a list).
func RunShellScript(commands ...string) Spec {
	rc := make([]any, len(commands))
	for i, c := range commands {
		rc[i] = c
	}
	return Spec{DocumentName: "AWS-RunShellScript", SchemaVersion: "1.2", Steps: []Step{{
		Name: "aws:runShellScript", Action: "aws:runShellScript",
		Inputs: []any{map[string]any{"id": "0.aws:runShellScript", "runCommand": rc, "timeoutSeconds": "3600", "workingDirectory": ""}},
	}}}
}

// Template returns a spec by its CLI name.
func Template(name, operation, rebootOption, associationID string, check bool) (Spec, error) {
	switch name {
	case "run-patch-baseline":
		return RunPatchBaseline(operation, rebootOption), nil
	case "run-patch-baseline-association":
		if associationID == "" {
			associationID = NewCommandID()
		}
		return RunPatchBaselineAssociation(associationID, operation, rebootOption), nil
	case "apply-ansible-playbooks":
		return ApplyAnsiblePlaybooks(check), nil
	case "run-shell-script":
		return RunShellScript("echo hello"), nil
	}
	return Spec{}, fmt.Errorf("unknown template %q (run-patch-baseline, run-patch-baseline-association, apply-ansible-playbooks, run-shell-script)", name)
}

// Templates are the names Template knows.
var Templates = []string{"run-patch-baseline", "run-patch-baseline-association", "apply-ansible-playbooks", "run-shell-script"}
