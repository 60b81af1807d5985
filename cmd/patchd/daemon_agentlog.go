package main

// agentLogPart is the daemon's agent log tail part. Owned by the agent log tail area; see setupAgentLog.
type agentLogPart struct{}

// setupAgentLog wires the agent log tail part into the daemon (not built yet).
func (d *daemon) setupAgentLog() error {
	d.agentLog = &agentLogPart{}
	return nil
}
