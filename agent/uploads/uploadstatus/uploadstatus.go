// Package uploadstatus is the record of patchd's last delivery to Systems
// Manager of each kind, as the daemon answers it and `patchd status` prints
// it. Package uploads keeps it up to date and exports it as metrics; this
// part is a package of its own so that the CLI does not link client_golang,
// whose start-up it would pay on every command (docs/design.md, "Two
// binaries").
package uploadstatus

import "time"

// Kinds of delivery.
const (
	KindInventory  = "inventory"
	KindCompliance = "compliance"
)

// Failure reasons, a closed set so the metric's series stay few.
const (
	ReasonNoAgentFolder = "no_agent_folder" // inventory: the agent's folder does not exist (yet)
	ReasonWriteError    = "write_error"     // inventory: the folder is not writable
	ReasonThrottled     = "throttled"
	ReasonServerError   = "server_error"
	ReasonNetwork       = "network"
	ReasonAccessDenied  = "access_denied"
	ReasonInvalid       = "invalid" // the service refused the request as malformed
	ReasonCredentials   = "credentials"
)

// Status is the last delivery of one kind.
type Status struct {
	Kind        string    `json:"kind"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastFailure time.Time `json:"last_failure,omitzero"`
	// Reason and Error explain the last failure; they are cleared by a
	// later success.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// Pending is what waits to be delivered (compliance: reports in the
	// outbox).
	Pending int `json:"pending"`
	// Off says why this kind is not delivered at all, when it is not.
	Off string `json:"off,omitempty"`
}
