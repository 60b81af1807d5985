package agentlog

import (
	"bytes"
	"time"
)

// The marker texts below come from the log statements of amazon-ssm-agent
// (github.com/aws/amazon-ssm-agent, release 3.3.1142): file names are in
// testdata/README.md next to the lines taken from them. The agent's message
// text is stable across 2.x and 3.x while the context tags are not, so
// matching is on the message text.

func has(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

func hasAny(b []byte, ss []string) bool {
	for _, s := range ss {
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

var rebootMarkers = []string{
	"requested reboot, need to resume", // framework/processor/processor.go
	"successfully requested a reboot",  // rebooter/rebooter.go
	"A plugin has requested a reboot",  // framework/coremanager/coremanager.go
	"Processing reboot request",        // framework/coremanager/coremanager.go
	"Rebooting the machine",            // rebooter/rebooter_unix.go
}

var networkMarkers = []string{
	"RequestError: send request failed",
	"dial tcp",
	"i/o timeout",
	"no such host",
	"network is unreachable",
	"connectex",
	"Throttling",
	"Rate exceeded",
	"TLS handshake timeout",
	"connection reset by peer",
}

var credentialMarkers = []string{
	"EC2RoleRequestError",
	"EC2MetadataError",
	"AccessDeniedException",
	"InvalidSignatureException",
	"Signature expired",
	"instance management role is not configured",
	"unable to build RSA signature",        // ssm/rsaauth/ssm_rsaV4.go
	"Unauthorized request",                 // control channel
	"before retrying retrieve credentials", // core/app/credentialrefresher
	"Retrieve credentials produced error",  // core/app/credentialrefresher
	"Failed to connect to Systems Manager with instance profile role credentials",
	"Failed to connect to Systems Manager with SSM role credentials",
	"no EC2 instance role found",
	"NoCredentialProviders",
	"ExpiredTokenException",
}

var stopMarkers = []string{
	"Stopping Core Agent", // core/app/agent.go
	"Stopping agent",      // setupcli
	"Bye.",                // core/app/agent.go, agent/agent/agent.go
	"got signal:",         // core/agent.go, agent/agent.go
	"stop requested",      // coremanager.go, longrunning manager
	"Shutting down amazon-ssm-agent",
	"shutting down...", // processor.go: a document still in progress at shutdown
	"Stopping SSM Agent Worker",
}

var startMarkers = []string{
	"Initializing new seelog logger", // printed before seelog is set up
	"New Seelog Logger Creation Complete",
	"Starting Core Agent",           // core/app/agent.go
	"amazon-ssm-agent - v",          // version banners of core and worker
	"starting worker process",       // core/workerprovider/longrunningprovider
	"Resuming core agent startup",   // core/app/agent.go
	"Create new startup processor",  // agent/agent.go (worker start)
	"Started amazon-ssm-agent",      // systemd
	"Started snap.amazon-ssm-agent", // systemd, snap
	// Windows: first line of a starting agent (longrunning/jobobject/jobobject_windows.go).
	"Job object creation on SSM agent successful",
}

var commandEndMarkers = []string{
	"result from Processor",    // runcommand/coremodule.go, processorwrappers
	"complete response",        // processor.go, outofproc/messaging/backend.go
	"Sending reply {",          // runcommand/service.go (2.x reply with the result)
	"completion message",       // runpluginutil.go
	"document worker closed",   // outofproc/worker/main.go
	"received timedout signal", // outofproc/messaging/messaging.go
	"listen reply channel closed",
}

var commandStartMarkers = []string{
	"Running plugin ",                // runpluginutil.go
	"started with configuration",     // plugins
	"received plugin config message", // outofproc/messaging/backend.go
	"Found in-progress document",     // processor.go (a resume)
	"submission started",             // processor.go
}

var healthMarkers = []string{
	"reporting agent health",     // health/healthcheck.go
	"skipping their healthcheck", // longrunning/manager/utils.go
	"Backing off health check",   // hibernation/hibernation.go
	"Agent is in hibernate mode", // hibernation/hibernation.go
	"hibernate",                  // any other hibernate notice without a cause
}

// Classify returns the event kind of an entry's first line. It follows
// SSM-AGENT-FACTS.md "Log event kinds": a reboot marker first, then a
// network cause (which wins over a credential context on the same line),
// then credentials, stop, start, command end and start, health.
func Classify(l *Line) Kind {
	m := l.Msg
	if len(l.Program) > 0 && l.Foreign() {
		return classifyForeign(l.Program, m)
	}
	if hasAny(m, rebootMarkers) {
		return Reboot
	}
	if hasAny(m, networkMarkers) {
		return NetworkError
	}
	if hasAny(m, credentialMarkers) {
		return CredentialsError
	}
	if hasAny(m, stopMarkers) {
		return AgentStop
	}
	if hasAny(m, startMarkers) || isStartLine(m) {
		return AgentStart
	}
	// A session worker shares the document worker's code and messages but
	// runs Session Manager sessions, not commands.
	session := has(m, "[ssm-session-worker]")
	if hasAny(m, commandEndMarkers) || isCommandComplete(m) {
		if session {
			return Other
		}
		return CommandEnd
	}
	if hasAny(m, commandStartMarkers) || (has(m, "document: ") && has(m, " worker started")) {
		if session {
			return Other
		}
		return CommandStart
	}
	if hasAny(m, healthMarkers) {
		return Health
	}
	return Other
}

// isStartLine matches start markers made of two parts.
func isStartLine(m []byte) bool {
	switch {
	case has(m, "OS: ") && has(m, ", Arch: "):
		return true
	case has(m, "Amazon SSM Agent v") && has(m, " is running"):
		return true
	case has(m, "(pid:") && has(m, ") started"): // "Worker ssm-agent-worker (pid:N) started"
		return true
	}
	return false
}

// isCommandComplete matches "command: aws.ssm.<cmd>.<inst> complete" and
// "execution of <MessageID> is over".
func isCommandComplete(m []byte) bool {
	if i := bytes.Index(m, []byte("command: ")); i >= 0 && bytes.HasSuffix(bytes.TrimRight(m, " "), []byte(" complete")) {
		return true
	}
	return has(m, "execution of ") && has(m, " is over")
}

// classifyForeign handles lines from other programs in journald output:
// only systemd's start and stop of the agent's unit mean anything.
func classifyForeign(prog, m []byte) Kind {
	if !bytes.Equal(prog, []byte("systemd")) || !has(m, "amazon-ssm-agent") {
		return Other
	}
	switch {
	case bytes.HasPrefix(m, []byte("Started ")), bytes.HasPrefix(m, []byte("Starting ")):
		return AgentStart
	case bytes.HasPrefix(m, []byte("Stopping ")), bytes.HasPrefix(m, []byte("Stopped ")):
		return AgentStop
	}
	return Other
}

// refine lets a continuation line sharpen a problem entry's kind: the agent
// prints aws-sdk errors as "caused by:" chains, so the network cause of a
// credential failure is often on the second or third line.
func refine(k Kind, level string, cont []byte) Kind {
	switch k {
	case CredentialsError:
		if hasAny(cont, networkMarkers) {
			return NetworkError
		}
	case Other:
		if level != "WARN" && level != "ERROR" && level != "CRITICAL" {
			return k
		}
		if hasAny(cont, networkMarkers) {
			return NetworkError
		}
		if hasAny(cont, credentialMarkers) {
			return CredentialsError
		}
	}
	return k
}

// standalone reports whether a line without a timestamp still begins an
// entry of its own instead of continuing the previous one.
func standalone(l *Line) bool {
	if l.Foreign() {
		return true
	}
	m := bytes.TrimSpace(l.Msg)
	if len(m) > 0 && len(bytes.Trim(m, ".…")) == 0 { // a pasted "..."
		return true
	}
	return has(m, "Initializing new seelog logger") || has(m, "New Seelog Logger Creation Complete")
}

// extract fills the facts later features need from an entry's first line.
func extract(ev *Event, m []byte) {
	ev.AgentVersion = versionAfter(m, "amazon-ssm-agent - v")
	if ev.AgentVersion == "" {
		ev.AgentVersion = versionAfter(m, "Amazon SSM Agent v")
	}
	if i := bytes.Index(m, []byte("aws.ssm.")); i >= 0 {
		ev.CommandID = token(m[i+len("aws.ssm."):], '.')
	}
	ev.DocumentID = documentID(m)
	if i := bytes.Index(m, []byte("Sleeping for ")); i >= 0 && has(m, "before retrying retrieve credentials") {
		if d, err := time.ParseDuration(token(m[i+len("Sleeping for "):], ' ')); err == nil && d > 0 {
			ev.Backoff = d
		}
	}
}

// versionAfter reads a dotted version number right after marker.
func versionAfter(m []byte, marker string) string {
	i := bytes.Index(m, []byte(marker))
	if i < 0 {
		return ""
	}
	v := m[i+len(marker):]
	n := 0
	for n < len(v) && n < 32 && (isDigit(v[n]) || v[n] == '.') {
		n++
	}
	for n > 0 && v[n-1] == '.' {
		n--
	}
	if n == 0 || !isDigit(v[0]) {
		return ""
	}
	return string(v[:n])
}

// token returns b up to stop, a space or a comma, bounded to 128 bytes so
// a junk line cannot produce a huge id.
func token(b []byte, stop byte) string {
	n := 0
	for n < len(b) && n < 128 && b[n] != stop && b[n] != ' ' && b[n] != ',' && b[n] != ']' {
		n++
	}
	return string(b[:n])
}

// documentID finds the document id in "[ssm-document-worker] [<id>]",
// "document: <id> worker started", "Found in-progress document - <id>",
// "sending document: <id> complete response" and "document <id> ...".
func documentID(m []byte) string {
	if i := bytes.Index(m, []byte("[ssm-document-worker] [")); i >= 0 {
		return token(m[i+len("[ssm-document-worker] ["):], ']')
	}
	for _, p := range []string{"Found in-progress document - ", "document: "} {
		if i := bytes.Index(m, []byte(p)); i >= 0 {
			return token(m[i+len(p):], ' ')
		}
	}
	if i := bytes.Index(m, []byte("document ")); i >= 0 && (has(m, "submission started") || has(m, "requested reboot")) {
		return token(m[i+len("document "):], ' ')
	}
	return ""
}
