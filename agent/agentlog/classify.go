package agentlog

import (
	"bytes"
	"math/bits"
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
	"rebooting the machine in",         // rebooter/rebooter_windows.go
}

var networkMarkers = []string{
	"RequestError: send request failed",
	"dial tcp",
	"i/o timeout",
	"I/O timeout", // session/communicator/websocketchannel.go
	"no such host",
	"network is unreachable",
	"connectex",
	"Throttling",
	"Rate exceeded",
	"TLS handshake timeout",
	"connection reset by peer",
	"Failed to dial websocket",             // websocketutil/websocketutil.go
	"Error while sending websocket ping",   // session/communicator/websocketchannel.go
	"seconds due to no response",           // runcommand/mds/service.go: the long poll got no answer
	"connection refused",                   // any dial to an endpoint
	"Client.Timeout exceeded",              // net/http's timeout in an aws-sdk error
	"context deadline exceeded (Client.Ti", // the same, cut differently
	"x509: certificate",                    // TLS to the endpoint failed (an intercepting proxy, a clock)
}

// controlChannelMarkers are failures to reach Session Manager's endpoint
// whose cause is not on the line: a network failure unless the line names a
// credential cause, so they are decided after credentials.
var controlChannelMarkers = []string{
	"Failed to get controlchannel token",  // session/controlchannel/controlchannel.go
	"createControlChannel request failed", // session/service/service.go
}

var credentialMarkers = []string{
	"EC2RoleRequestError",
	"EC2MetadataError",
	"AccessDeniedException",
	"InvalidSignatureException",
	"Signature expired",
	"instance management role is not configured",
	"unable to build RSA signature",  // ssm/rsaauth/ssm_rsaV4.go
	"failed to build RSA signature",  // ssm/rsaauth/ssm_rsaV4.go
	"Failed to get the v4 signature", // session/communicator/websocketchannel.go
	"Unauthorized request",           // control channel
	"UnauthorizedRequest",            // MGS: "Server authentication failed: <UnauthorizedRequest ..."
	"UnrecognizedClientException",    // the security token included in the request is invalid
	"InvalidClientTokenId",
	"before retrying retrieve credentials", // core/app/credentialrefresher
	"Retrieve credentials produced",        // core/app/credentialrefresher: error, aws error, unrecoverable aws error
	"Credentials are not available when",   // core/app/credentialrefresher
	"shared credentials are already expired",
	"RequestManagedInstanceRoleToken", // managedInstances/rolecreds (on-premises)
	"Agent failed to assume any identity",
	"failed to find identity, retrying",
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
	"Got signal:",         // agent/agent.go (2.x)
	"stop requested",      // coremanager.go, longrunning manager
	"Shutting down amazon-ssm-agent",
	"shutting down...", // processor.go: a document still in progress at shutdown
	"Stopping ssm agent worker",
	"Receiving stop signal, stop worker monitor",   // core/workerprovider/longrunningprovider
	"Received stop/termination signal",             // core/app/agent.go
	"Received termination message from core agent", // ipc/messagebus/respondent.go (worker)
	"Stopping MessageGatewayService",               // session/session.go
	"pool has been put into shutdown",              // task/pool.go, the processor's pools at stop
	"Service received stop ChangeRequest",          // core/agent_windows.go
	"Service received shutdown ChangeRequest",      // core/agent_windows.go
	"Stopping SSM agent because sysprep",           // agent/agent_windows.go
	"Successfully stopped agent",                   // setupcli
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
	"Starting up windows agent",     // core/agent_windows.go
	// Windows: first line of a starting agent (longrunning/jobobject/jobobject_windows.go).
	"Job object creation on SSM agent successful",
}

// commandEndMarkers: the agent worker's processor says once per document
// run that it sends the document's complete response (processor.go), and
// only then; per-step lines ("Sending plugin <step> completion message",
// "received plugin: <step> result") and the other once-per-document lines
// of the same end ("command: <id> complete", "execution of <id> is over",
// the document worker's own "document complete response") are Other, so
// that a document ends once.
var commandEndMarkers = []string{
	"sending document: ", // with " complete response": processor.go
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
	mReboot         = reg(rebootMarkers...)
	mNetwork        = reg(networkMarkers...)
	mCredentials    = reg(credentialMarkers...)
	mControlChannel = reg(controlChannelMarkers...)
	mStop           = reg(stopMarkers...)
	mStart          = reg(startMarkers...)
	mCommandEnd     = reg(commandEndMarkers...)
	mHealth         = reg(healthMarkers...)

	mArch             = reg(", Arch: ")
	mBanner           = reg("Amazon SSM Agent v")
	mRunning          = reg(" is running")
	mStarted          = reg(") started")
	mCompleteResponse = reg(" complete response")
	mDocumentColon    = reg("document: ")
	mWorkerStarted    = reg(" worker started")
	mSession          = reg("[ssm-session-worker]")
	mVersionCore      = reg("amazon-ssm-agent - v")
	// The worker's banner "ssm-agent-worker - v3.3.1142.0" (agent/agent/agent.go),
	// found by its end: every worker line's tag is "[ssm-agent-worker]",
	// and a marker with those bytes would pass the scan's sieve on all of
	// them. The document worker's banner ends the same way and is no start.
	mVersionWorker = reg("worker - v")
	mAwsSsm        = reg("aws.ssm.")
	mSleeping      = reg("Sleeping for ")
	mRetryCreds    = reg("before retrying retrieve credentials")
	mDocTag        = reg("[ssm-document-worker] [")
	mInProgress    = reg("Found in-progress document - ")
	mDocumentSpace = reg("document ")
	mSubmission    = reg("submission started")
	mFacts         = or(mVersionCore, mVersionWorker, mBanner, mAwsSsm, mSleeping, mDocTag, mInProgress, mDocumentColon, mDocumentSpace)
	// mKinds are the markers kindOf looks at: a line with none is Other.
	mKinds = or(mReboot, mNetwork, mCredentials, mControlChannel, mStop, mStart, mArch, mBanner, mStarted, mVersionWorker,
		mCommandEnd, mWorkerStarted, mHealth)
	deciding = newDecider([]found{mReboot, mNetwork, mCredentials, mControlChannel, mStop, mStart},
		[]Kind{Reboot, NetworkError, CredentialsError, NetworkError, AgentStop, AgentStart})
)

// sets are the marker sets a line has markers of, a bit per set: kindOf
// and extract ask a dozen questions of each line, and a bit test in a
// register answers one where found.any loads and tests two words.
type sets uint64

const (
	sKinds sets = 1 << iota
	sDeciding
	sArch
	sBanner
	sRunning
	sStarted
	sCompleteResponse
	sDocumentColon
	sWorkerStarted
	sSession
	sVersionCore
	sVersionWorker
	sAwsSsm
	sSleeping
	sRetryCreds
	sDocTag
	sInProgress
	sDocumentSpace
	sSubmission
	sReboot
	sCommandEnd
	sHealth
	sFacts
)

// setsOfID are the sets each marker is in.
var setsOfID = func() (by [maxMarkers]sets) {
	for _, s := range []struct {
		bit sets
		set found
	}{
		{sKinds, mKinds}, {sDeciding, deciding.set}, {sArch, mArch}, {sBanner, mBanner}, {sRunning, mRunning},
		{sStarted, mStarted}, {sCompleteResponse, mCompleteResponse}, {sDocumentColon, mDocumentColon},
		{sWorkerStarted, mWorkerStarted}, {sSession, mSession}, {sVersionCore, mVersionCore},
		{sVersionWorker, mVersionWorker}, {sAwsSsm, mAwsSsm}, {sSleeping, mSleeping}, {sRetryCreds, mRetryCreds},
		{sDocTag, mDocTag}, {sInProgress, mInProgress}, {sDocumentSpace, mDocumentSpace}, {sSubmission, mSubmission},
		{sReboot, mReboot}, {sCommandEnd, mCommandEnd}, {sHealth, mHealth}, {sFacts, mFacts},
	} {
		for id := range maxMarkers {
			if s.set[id/64]&(1<<(id%64)) != 0 {
				by[id] |= s.bit
			}
		}
	}
	return by
}()

// decider knows the kinds that one marker decides by itself, which come
// first in kindOf, by marker id. Their sets are registered in kindOf's
// order, so the marker of a line with the lowest id is of the first kind
// the line has: one lookup instead of a test per kind.
type decider struct {
	set  found
	kind [maxMarkers]Kind
}

func newDecider(sets []found, kinds []Kind) decider {
	var d decider
	var rank [maxMarkers]int
	for i := len(sets) - 1; i >= 0; i-- { // a marker in two sets is of the first
		d.set = or(d.set, sets[i])
		for id := 0; id < maxMarkers; id++ {
			if sets[i][id/64]&(1<<(id%64)) != 0 {
				d.kind[id], rank[id] = kinds[i], i
			}
		}
	}
	last := 0
	for id := 0; id < maxMarkers; id++ {
		if d.kind[id] != "" {
			if rank[id] < last {
				panic("agentlog: marker sets registered out of kindOf's order") // a programming error, at init
			}
			last = rank[id]
		}
	}
	return d
}

// Classify returns the event kind of an entry's first line, as
// docs/agent-log-events.md defines the kinds: a reboot marker first, then
// a network cause (which wins over a credential context on the same line),
// then credentials, a control channel failure without a named cause
// (network), stop, start, command end and start, health.
func Classify(l *Line) Kind {
	k, _, _ := classify(table(), l, nil, true)
	return k
}

// classify is Classify that also returns the markers found and sets their
// positions in at (when not nil), which extract reuses instead of searching
// the line again. alone is scanFrom's.
func classify(t *sieves, l *Line, at *positions, alone bool) (Kind, found, sets) {
	m := l.Msg
	f, s := scanFrom(t, view(m), t.skipTag(l.tag), at, alone)
	if len(l.Program) > 0 && l.Foreign() {
		return classifyForeign(l.Program, m), f, s
	}
	return kindOf(f, s, m), f, s
}

// kindOf is the kind of a line with the markers f, in the sets s.
func kindOf(f found, s sets, m []byte) Kind {
	if s&sKinds == 0 {
		return Other
	}
	// A reboot marker first, then network, credentials, stop, start.
	if s&sDeciding != 0 {
		return deciding.kind[f.and(deciding.set).first()]
	}
	if isStartLine(s, m) {
		return AgentStart
	}
	// A session worker shares the document worker's code and messages but
	// runs Session Manager sessions, not commands.
	session := s&sSession != 0
	if s&sCommandEnd != 0 && s&sCompleteResponse != 0 {
		if session {
			return Other
		}
		return CommandEnd
	}
	if s&sDocumentColon != 0 && s&sWorkerStarted != 0 {
		if session {
			return Other
		}
		return CommandStart
	}
	if s&sHealth != 0 {
		return Health
	}
	return Other
}

const workerBanner = "ssm-agent-worker - v"

// isStartLine matches start markers made of two parts. "OS: " and "(pid:"
// are too short for the scan's stride and count only next to their longer
// part, so they are searched for only when it is there.
func isStartLine(s sets, m []byte) bool {
	return (s&sArch != 0 && has(m, "OS: ")) ||
		(s&sVersionWorker != 0 && has(m, workerBanner)) ||
		(s&sBanner != 0 && s&sRunning != 0) ||
		(s&sStarted != 0 && has(m, "(pid:")) // "Worker ssm-agent-worker (pid:N) started"
}

// classifyForeign handles lines from other programs in journald output:
// only systemd's start and stop of the agent's unit mean anything.
func classifyForeign(prog, m []byte) Kind {
	// systemd's lines carry its name, or with journalctl -o with-unit its
	// unit's, init.scope.
	if !(bytes.Equal(prog, []byte("systemd")) || bytes.Equal(prog, []byte("init.scope"))) || !has(m, "amazon-ssm-agent") {
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
func refine(t *sieves, k Kind, level string, cont []byte) Kind {
	switch k {
	case CredentialsError:
		if scanWith(t, view(cont), nil).any(mNetwork) {
			return NetworkError
		}
	case Other:
		if level != "WARN" && level != "ERROR" && level != "CRITICAL" {
			return k
		}
		f := scanWith(t, view(cont), nil)
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
	if dotsOnly(bytes.TrimSpace(l.Msg)) { // a pasted "..."
		return true
	}
	if isSeparator(l.Msg) {
		return true
	}
	// A process's own first or last words, whose time and level were cut
	// off in a paste ("amazon-ssm-agent got signal:terminated ..."): no
	// agent message continues with them.
	if len(l.Msg) > 0 && ownFirst[l.Msg[0]] {
		for _, p := range ownLines {
			if bytes.HasPrefix(l.Msg, []byte(p)) {
				return true
			}
		}
	}
	// Both of seelog's texts have "eelog ": one search on the
	// continuation lines, which have neither, instead of two.
	return has(l.Msg, "eelog ") &&
		(has(l.Msg, "Initializing new seelog logger") || has(l.Msg, "New Seelog Logger Creation Complete"))
}

// ownFirst are the first bytes of ownLines.
var ownFirst = func() (first [256]bool) {
	for _, p := range ownLines {
		first[p[0]] = true
	}
	return first
}()

// ownLines begin the lines that are an entry of their own even without a
// time or level.
var ownLines = [...]string{"amazon-ssm-agent got signal:", "ssm-agent-worker got signal:", "amazon-ssm-agent - v",
	"ssm-agent-worker - v", "Starting Core Agent", "Stopping Core Agent"}

// isSeparator reports whether m is a line that a tool put between entries:
// grep's "--" between context groups, journalctl's "-- Boot <id> --" and
// "-- Logs begin at ... --", and tail's "==> <file> <==" before each file's
// lines. It belongs to no entry.
func isSeparator(m []byte) bool {
	if len(m) < 2 {
		return false
	}
	if m[0] == '=' {
		return bytes.HasPrefix(m, []byte("==> ")) && bytes.HasSuffix(m, []byte(" <=="))
	}
	if m[0] != '-' || m[1] != '-' {
		return false
	}
	return len(m) == 2 || (m[2] == ' ' && bytes.HasSuffix(m, []byte(" --")))
}

// dotsOnly reports whether m is one or more of '.' and '…': what
// bytes.Trim(m, ".…") leaves empty, without decoding every line's runes.
func dotsOnly(m []byte) bool {
	if len(m) == 0 {
		return false
	}
	for len(m) > 0 {
		switch {
		case m[0] == '.':
			m = m[1:]
		case bytes.HasPrefix(m, []byte("…")):
			m = m[len("…"):]
		default:
			return false
		}
	}
	return true
}

// extract fills the facts later features need from an entry's first line.
// m is the event's own Message: the ids are substrings of it, so they cost
// no allocation of their own. s and at are the sets of the markers scan
// found in m and their places.
func extract(ev *Event, m string, s sets, at *positions) {
	if s&sFacts == 0 {
		return
	}
	if s&sVersionCore != 0 {
		ev.AgentVersion = version(after(m, at, mVersionCore))
	}
	if ev.AgentVersion == "" && s&sVersionWorker != 0 && strings.Contains(m, workerBanner) {
		ev.AgentVersion = version(after(m, at, mVersionWorker))
	}
	if ev.AgentVersion == "" && s&sBanner != 0 {
		ev.AgentVersion = version(after(m, at, mBanner))
	}
	if s&sAwsSsm != 0 {
		ev.CommandID = token(after(m, at, mAwsSsm), '.')
	}
	ev.DocumentID = documentID(m, s, at)
	if s&sSleeping != 0 && s&sRetryCreds != 0 {
		if d, err := time.ParseDuration(token(after(m, at, mSleeping), ' ')); err == nil && d > 0 {
			ev.Backoff = d
		}
	}
}

// after is m after the first place of marker (a set of one), which scan
// found in m and set in at.
func after(m string, at *positions, marker found) string {
	id := marker.first()
	return m[int(at[id])+len(markers.pats[id]):]
}

// version reads a dotted version number at the start of v.
func version(v string) string {
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

// token returns b up to stop, a space, a comma or ']', bounded to 128
// bytes so a junk line cannot produce a huge id.
func token(b string, stop byte) string {
	n := 0
	// Eight bytes at a time: ids are 36 bytes and more, and a word
	// tests all eight for the four stops in a dozen instructions.
	for n+8 <= len(b) && n < 128 {
		if e := stops(le64(b[n:]), stop); e != 0 {
			return b[:min(n+bits.TrailingZeros64(e)/8, 128)]
		}
		n += 8
	}
	for n < len(b) && n < 128 && !tokenEnds[b[n]] && b[n] != stop {
		n++
	}
	return b[:n]
}

// stops has the high bit set of the lowest byte of x that ends a token (a
// space, a comma, ']' or stop), and maybe of bytes above it, which
// token does not look at: a byte of x^c is zero where x has c, and
// (y-lo)&^y&hi marks a zero byte exactly when no lower byte is zero.
func stops(x uint64, stop byte) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	zero := func(y uint64) uint64 { return (y - lo) &^ y & hi }
	return zero(x^(' '*lo)) | zero(x^(','*lo)) | zero(x^(']'*lo)) | zero(x^(uint64(stop)*lo))
}

// tokenEnds are the bytes that end every token.
var tokenEnds = [256]bool{' ': true, ',': true, ']': true}

// documentID finds the document id in "[ssm-document-worker] [<id>]",
// "document: <id> worker started", "Found in-progress document - <id>",
// "sending document: <id> complete response" and "document <id> ...".
func documentID(m string, s sets, at *positions) string {
	switch {
	case s&sDocTag != 0:
		return token(after(m, at, mDocTag), ']')
	case s&sInProgress != 0:
		return token(after(m, at, mInProgress), ' ')
	case s&sDocumentColon != 0:
		return token(after(m, at, mDocumentColon), ' ')
	case s&sDocumentSpace != 0 && s&(sSubmission|sReboot) != 0:
		return token(after(m, at, mDocumentSpace), ' ')
	}
	return ""
}
