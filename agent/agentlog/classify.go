package agentlog

import (
	"bytes"
	"strings"
	"time"
	"unsafe"
)

// The marker texts below come from the log statements of amazon-ssm-agent
// (github.com/aws/amazon-ssm-agent, release 3.3.1142): file names are in
// testdata/README.md next to the lines taken from them. The agent's message
// text is stable across 2.x and 3.x while the context tags are not, so
// matching is on the message text.

// view is b as a string without a copy, for the searches below and for an
// event's Message: it must not outlive b's next reuse, which is why an
// event's strings are valid only during the call that hands it out.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func has(b []byte, s string) bool { return strings.Contains(view(b), s) }

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

// The marker sets, registered once; scan finds them all in one pass.
var (
	mReboot       = reg(rebootMarkers...)
	mNetwork      = reg(networkMarkers...)
	mCredentials  = reg(credentialMarkers...)
	mStop         = reg(stopMarkers...)
	mStart        = reg(startMarkers...)
	mCommandEnd   = reg(commandEndMarkers...)
	mCommandStart = reg(commandStartMarkers...)
	mHealth       = reg(healthMarkers...)

	mOS            = reg("OS: ")
	mArch          = reg(", Arch: ")
	mBanner        = reg("Amazon SSM Agent v")
	mRunning       = reg(" is running")
	mPid           = reg("(pid:")
	mStarted       = reg(") started")
	mCommandColon  = reg("command: ")
	mExecutionOf   = reg("execution of ")
	mIsOver        = reg(" is over")
	mDocumentColon = reg("document: ")
	mWorkerStarted = reg(" worker started")
	mSession       = reg("[ssm-session-worker]")
	mVersionCore   = reg("amazon-ssm-agent - v")
	mAwsSsm        = reg("aws.ssm.")
	mSleeping      = reg("Sleeping for ")
	mRetryCreds    = reg("before retrying retrieve credentials")
	mDocTag        = reg("[ssm-document-worker] [")
	mInProgress    = reg("Found in-progress document - ")
	mDocumentSpace = reg("document ")
	mSubmission    = reg("submission started")
	mFacts         = or(mVersionCore, mBanner, mAwsSsm, mSleeping, mDocTag, mInProgress, mDocumentColon, mDocumentSpace)
)

// Classify returns the event kind of an entry's first line. It follows
// SSM-AGENT-FACTS.md "Log event kinds": a reboot marker first, then a
// network cause (which wins over a credential context on the same line),
// then credentials, stop, start, command end and start, health.
func Classify(l *Line) Kind {
	k, _ := classify(l)
	return k
}

// classify is Classify that also returns the markers found, which extract
// reuses instead of searching the line again.
func classify(l *Line) (Kind, found) {
	m := l.Msg
	f := scan(view(m))
	if len(l.Program) > 0 && l.Foreign() {
		return classifyForeign(l.Program, m), f
	}
	return kindOf(f, m), f
}

func kindOf(f found, m []byte) Kind {
	switch {
	case f.any(mReboot):
		return Reboot
	case f.any(mNetwork):
		return NetworkError
	case f.any(mCredentials):
		return CredentialsError
	case f.any(mStop):
		return AgentStop
	case f.any(mStart), isStartLine(f):
		return AgentStart
	}
	// A session worker shares the document worker's code and messages but
	// runs Session Manager sessions, not commands.
	session := f.any(mSession)
	if f.any(mCommandEnd) || isCommandComplete(f, m) {
		if session {
			return Other
		}
		return CommandEnd
	}
	if f.any(mCommandStart) || (f.any(mDocumentColon) && f.any(mWorkerStarted)) {
		if session {
			return Other
		}
		return CommandStart
	}
	if f.any(mHealth) {
		return Health
	}
	return Other
}

// isStartLine matches start markers made of two parts.
func isStartLine(f found) bool {
	return (f.any(mOS) && f.any(mArch)) ||
		(f.any(mBanner) && f.any(mRunning)) ||
		(f.any(mPid) && f.any(mStarted)) // "Worker ssm-agent-worker (pid:N) started"
}

// isCommandComplete matches "command: aws.ssm.<cmd>.<inst> complete" and
// "execution of <MessageID> is over".
func isCommandComplete(f found, m []byte) bool {
	if f.any(mCommandColon) && bytes.HasSuffix(bytes.TrimRight(m, " "), []byte(" complete")) {
		return true
	}
	return f.any(mExecutionOf) && f.any(mIsOver)
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
		if scan(view(cont)).any(mNetwork) {
			return NetworkError
		}
	case Other:
		if level != "WARN" && level != "ERROR" && level != "CRITICAL" {
			return k
		}
		f := scan(view(cont))
		if f.any(mNetwork) {
			return NetworkError
		}
		if f.any(mCredentials) {
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
// m is the event's own Message: the ids are substrings of it, so they cost
// no allocation of their own.
func extract(ev *Event, m string, f found) {
	if !f.any(mFacts) {
		return
	}
	if f.any(mVersionCore) {
		ev.AgentVersion = versionAfter(m, "amazon-ssm-agent - v")
	}
	if ev.AgentVersion == "" && f.any(mBanner) {
		ev.AgentVersion = versionAfter(m, "Amazon SSM Agent v")
	}
	if f.any(mAwsSsm) {
		if i := strings.Index(m, "aws.ssm."); i >= 0 {
			ev.CommandID = token(m[i+len("aws.ssm."):], '.')
		}
	}
	ev.DocumentID = documentID(m, f)
	if f.any(mSleeping) && f.any(mRetryCreds) {
		i := strings.Index(m, "Sleeping for ")
		if d, err := time.ParseDuration(token(m[i+len("Sleeping for "):], ' ')); err == nil && d > 0 {
			ev.Backoff = d
		}
	}
}

// versionAfter reads a dotted version number right after marker.
func versionAfter(m string, marker string) string {
	i := strings.Index(m, marker)
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
	return v[:n]
}

// token returns b up to stop, a space or a comma, bounded to 128 bytes so
// a junk line cannot produce a huge id.
func token(b string, stop byte) string {
	n := 0
	for n < len(b) && n < 128 && b[n] != stop && b[n] != ' ' && b[n] != ',' && b[n] != ']' {
		n++
	}
	return b[:n]
}

// documentID finds the document id in "[ssm-document-worker] [<id>]",
// "document: <id> worker started", "Found in-progress document - <id>",
// "sending document: <id> complete response" and "document <id> ...".
func documentID(m string, f found) string {
	after := func(p string, stop byte) string {
		i := strings.Index(m, p)
		if i < 0 {
			return ""
		}
		return token(m[i+len(p):], stop)
	}
	switch {
	case f.any(mDocTag):
		return after("[ssm-document-worker] [", ']')
	case f.any(mInProgress):
		return after("Found in-progress document - ", ' ')
	case f.any(mDocumentColon):
		return after("document: ", ' ')
	case f.any(mDocumentSpace) && (f.any(mSubmission) || f.any(mReboot)):
		return after("document ", ' ')
	}
	return ""
}
