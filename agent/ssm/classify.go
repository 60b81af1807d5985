package ssm

import (
	"encoding/json"
	"path"
	"regexp"
	"strings"
	"sync"
)

// DefaultPatchDocuments are the documents that patch a host (docs/design.md, "The patch cycle").
var DefaultPatchDocuments = []string{
	"AWS-RunPatchBaseline",
	"AWS-RunPatchBaselineAssociation",
	"AWS-RunPatchBaselineWithHooks",
	"AWS-ApplyAnsiblePlaybooks",
	"AWS-InstallWindowsUpdates",
}

const ansibleDocument = "AWS-ApplyAnsiblePlaybooks"

// Operations reported in PatchRun.Operation.
const (
	OpInstall = "Install"
	OpScan    = "Scan"
	OpCheck   = "Check" // Ansible dry run
	OpApply   = "Apply" // Ansible real run
)

// Classify says whether the document in state is a patch run and with which
// operation. extraPatterns are path.Match patterns from the configuration
// (cycle.extra_documents), matched like the built-in names. The operation is
// read from the substituted step properties; when it cannot be found the run
// is treated as Install (or Apply for Ansible) so hooks rather run once too
// often than never, and Reason says so.
func Classify(state *DocumentState, extraPatterns []string) PatchRun {
	name := state.DocumentInformation.DocumentName
	if !isPatchDocument(name, extraPatterns) {
		return PatchRun{Reason: "document " + quoteName(name) + " is not a patch document"}
	}
	if baseName(name) == ansibleDocument {
		switch v := ansibleCheck(state); v {
		case "True":
			return PatchRun{IsPatch: true, Operation: OpCheck, Reason: "Ansible Check=True is a dry run"}
		case "False":
			return PatchRun{IsPatch: true, Operation: OpApply, OpensCycle: true, Reason: "Ansible Check=False"}
		default:
			return PatchRun{IsPatch: true, Operation: OpApply, OpensCycle: true,
				Reason: "Ansible Check value not found in step properties; treated as Apply"}
		}
	}
	op, where := findOperation(state)
	switch op {
	case OpScan:
		return PatchRun{IsPatch: true, Operation: OpScan, Reason: "operation Scan (" + where + ") changes nothing"}
	case OpInstall:
		return PatchRun{IsPatch: true, Operation: OpInstall, OpensCycle: true, Reason: "operation Install (" + where + ")"}
	}
	return PatchRun{IsPatch: true, Operation: OpInstall, OpensCycle: true,
		Reason: "operation not found in step properties; treated as Install"}
}

func quoteName(s string) string {
	if s == "" {
		return "(unnamed)"
	}
	return s
}

// baseName strips the ARN prefix of a shared document
// (arn:aws:ssm:<region>:<account>:document/<Name>).
func baseName(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 && strings.HasPrefix(name, "arn:") {
		return name[i+1:]
	}
	return name
}

func isPatchDocument(name string, extra []string) bool {
	if name == "" {
		return false
	}
	base := baseName(name)
	for _, d := range DefaultPatchDocuments {
		if base == d {
			return true
		}
	}
	for _, p := range extra {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
		if ok, _ := path.Match(p, base); ok {
			return true
		}
	}
	return false
}

// The patterns below are compiled on first use, not at start-up: most
// patchd commands never classify a document.
var (
	// The patch payload's entry call in AWS-RunPatchBaseline's PatchLinux and
	// PatchMacOS steps: execute("os_selector", "PatchLinux", "<SnapshotId>",
	// "<Operation>", ...), split over several runCommand lines with a
	// trailing backslash.
	executeCall = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`common_startup_entrance\.execute\(([^)]*)\)`) })
	quotedArg   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`"([^"\\]*)"`) })
	// PatchWindows: Invoke-PatchBaselineOperation -Operation Install ...;
	// AWS-InstallWindowsUpdates takes -Action.
	psOperation = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)-(?:Operation|Action)\s+['"]?(Scan|Install)\b`) })
	// AWS-ApplyAnsiblePlaybooks: if [[ "<Check>" == True ]] ; then
	// ansible-playbook ... --check ...
	ansibleIf = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\[\[\s*"([^"]*)"\s*==\s*True\s*\]\]`) })
)

// findOperation looks through every step's properties for the operation
// and returns it with a note on where it was found. A document whose steps
// name both (AWS-RunPatchBaselineWithHooks scans before it installs) is an
// Install: hooks rather run for a scan than miss an install.
func findOperation(state *DocumentState) (op, where string) {
	for _, p := range state.InstancePluginsInformation {
		props := p.Configuration.Properties
		found, how := operationInScript(scriptText(props)), "runCommand"
		if found == "" {
			// aws:runDocument passes the parameters as a map or as a JSON
			// string.
			found, how = operationParam(props, 0), "Operation parameter"
		}
		switch {
		case found == OpInstall:
			return OpInstall, "step " + p.stepName() + " " + how
		case found == OpScan && op == "":
			op, where = OpScan, "step "+p.stepName()+" "+how
		}
	}
	return op, where
}

func operationInScript(script string) string {
	if script == "" {
		return ""
	}
	joined := strings.ReplaceAll(script, "\\\n", " ")
	if m := executeCall().FindStringSubmatch(joined); m != nil {
		args := quotedArg().FindAllStringSubmatch(m[1], -1)
		// The fourth argument is the operation; older or newer payload calls
		// may shift it, so fall back to any argument that is one.
		if len(args) > 3 {
			if op := normOp(args[3][1]); op != "" {
				return op
			}
		}
		for _, a := range args {
			if op := normOp(a[1]); op != "" {
				return op
			}
		}
	}
	if m := psOperation().FindStringSubmatch(script); m != nil {
		return normOp(m[1])
	}
	return ""
}

func normOp(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "scan":
		return OpScan
	case "install":
		return OpInstall
	}
	return ""
}

// operationParam finds a key "Operation" with value Scan or Install in
// nested properties, also inside JSON-encoded strings.
func operationParam(v any, depth int) string {
	if depth > 6 {
		return ""
	}
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if strings.EqualFold(k, "Operation") {
				switch y := x.(type) {
				case string:
					if op := normOp(y); op != "" {
						return op
					}
				case []any:
					if len(y) == 1 {
						if s, ok := y[0].(string); ok {
							if op := normOp(s); op != "" {
								return op
							}
						}
					}
				}
			}
		}
		for _, x := range t {
			if op := operationParam(x, depth+1); op != "" {
				return op
			}
		}
	case []any:
		for _, x := range t {
			if op := operationParam(x, depth+1); op != "" {
				return op
			}
		}
	case string:
		s := strings.TrimSpace(t)
		if strings.HasPrefix(s, "{") && strings.Contains(s, "peration") {
			var m map[string]any
			if json.Unmarshal([]byte(s), &m) == nil {
				return operationParam(m, depth+1)
			}
		}
	}
	return ""
}

// scriptText returns a step's runCommand (a list of lines or one string)
// as one text, or "".
func scriptText(props any) string {
	var lines []string
	collect := func(m map[string]any) {
		rc, ok := m["runCommand"]
		if !ok {
			rc, ok = m["commands"]
		}
		if !ok {
			return
		}
		switch t := rc.(type) {
		case string:
			lines = append(lines, t)
		case []any:
			for _, l := range t {
				if s, ok := l.(string); ok {
					lines = append(lines, s)
				}
			}
		}
	}
	switch t := props.(type) {
	case map[string]any:
		collect(t)
	case []any: // schema 1.2: a list of property sets
		for _, x := range t {
			if m, ok := x.(map[string]any); ok {
				collect(m)
			}
		}
	}
	return strings.Join(lines, "\n")
}

// ansibleCheck returns the substituted Check value of AWS-ApplyAnsiblePlaybooks
// ("True", "False"), or "" when it cannot be found.
func ansibleCheck(state *DocumentState) string {
	for _, p := range state.InstancePluginsInformation {
		lines := strings.Split(scriptText(p.Configuration.Properties), "\n")
		for i, l := range lines {
			m := ansibleIf().FindStringSubmatch(l)
			if m == nil {
				continue
			}
			// Only the if that chooses --check; other True tests
			// (InstallDependencies) share the form.
			if i+1 < len(lines) && strings.Contains(lines[i+1], "--check") {
				switch strings.ToLower(m[1]) {
				case "true":
					return "True"
				case "false":
					return "False"
				}
				return m[1]
			}
		}
	}
	return ""
}
