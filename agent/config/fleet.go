package config

import (
	"net/url"
	"path/filepath"
	"slices"
	"time"
)

// Inventory sets the custom inventory files written for amazon-ssm-agent
// (the ledger as Custom:PatchdCycles and Custom:PatchdPackages).
type Inventory struct {
	// Enabled writes the files after every closed cycle and at start.
	Enabled bool `yaml:"enabled"`
	// Directory is the inventory association's customInventoryDirectory;
	// empty: <paths.agent_data>/<instance id>/inventory/custom.
	Directory string `yaml:"directory"`
}

// SSM sets the compliance report sent to Systems Manager.
type SSM struct {
	// Report is auto (on when an instance id and credentials are found),
	// on or off.
	Report string `yaml:"report"`
	// Endpoint overrides the SSM endpoint (a VPC endpoint); empty:
	// $AWS_ENDPOINT_URL_SSM, else $AWS_ENDPOINT_URL, else the region's.
	Endpoint string `yaml:"endpoint"`
	// Severity of each phase's hook items (pre-patch, pre-reboot,
	// post-patch) and of the cycle's own items.
	SeverityPrePatch  string `yaml:"severity_pre_patch"`
	SeverityPreReboot string `yaml:"severity_pre_reboot"`
	SeverityPostPatch string `yaml:"severity_post_patch"`
	SeverityCycle     string `yaml:"severity_cycle"`
	// RetryMax caps the backoff between retries of a report.
	RetryMax time.Duration `yaml:"retry_max"`
}

// fleetDefaults sets the defaults of the fleet settings.
func fleetDefaults(c *Config) {
	c.Inventory = Inventory{Enabled: true}
	c.SSM = SSM{Report: "auto", SeverityPrePatch: "MEDIUM", SeverityPreReboot: "MEDIUM", SeverityPostPatch: "HIGH",
		SeverityCycle: "HIGH", RetryMax: 15 * time.Minute}
}

// Severities are the service's ComplianceSeverity values.
var Severities = []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNSPECIFIED"}

// fleetFlags registers one flag per fleet setting.
func fleetFlags(str func(string, string, func(*Config) *string), boolean func(string, string, func(*Config) *bool), dur func(string, string, func(*Config) *time.Duration)) {
	boolean("inventory.enabled", "Write the ledger as custom inventory for amazon-ssm-agent's inventory association.", func(c *Config) *bool { return &c.Inventory.Enabled })
	str("inventory.directory", "Custom inventory folder (empty: <path.agent-data>/<instance id>/inventory/custom).", func(c *Config) *string { return &c.Inventory.Directory })
	str("ssm.report", "Send hook and cycle results as SSM compliance: auto (when an instance id and credentials are found), on, off.", func(c *Config) *string { return &c.SSM.Report })
	str("ssm.endpoint", "SSM endpoint URL, e.g. a VPC endpoint (empty: $AWS_ENDPOINT_URL_SSM, else $AWS_ENDPOINT_URL, else the region's).", func(c *Config) *string { return &c.SSM.Endpoint })
	str("ssm.severity-pre-patch", "Compliance severity of pre-patch hook items.", func(c *Config) *string { return &c.SSM.SeverityPrePatch })
	str("ssm.severity-pre-reboot", "Compliance severity of pre-reboot hook items.", func(c *Config) *string { return &c.SSM.SeverityPreReboot })
	str("ssm.severity-post-patch", "Compliance severity of post-patch hook items.", func(c *Config) *string { return &c.SSM.SeverityPostPatch })
	str("ssm.severity-cycle", "Compliance severity of the cycle and monitoring-restored items.", func(c *Config) *string { return &c.SSM.SeverityCycle })
	dur("ssm.retry-max", "Longest wait between retries of a compliance report.", func(c *Config) *time.Duration { return &c.SSM.RetryMax })
}

// validateFleet checks the fleet settings.
func (c *Config) validateFleet(add func(key, format string, args ...any)) {
	if c.Inventory.Directory != "" && !filepath.IsAbs(c.Inventory.Directory) {
		add("inventory.directory", "%q is not an absolute path; write it from /, or leave it empty for the agent's default folder", c.Inventory.Directory)
	}
	if !slices.Contains([]string{"auto", "on", "off"}, c.SSM.Report) {
		add("ssm.report", "%q is not auto, on or off", c.SSM.Report)
	}
	if c.SSM.Endpoint != "" {
		if u, err := url.Parse(c.SSM.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("ssm.endpoint", "%q is not a URL like https://vpce-0123-abcd.ssm.eu-west-1.vpce.amazonaws.com", c.SSM.Endpoint)
		}
	}
	for key, v := range map[string]string{"ssm.severity_pre_patch": c.SSM.SeverityPrePatch, "ssm.severity_pre_reboot": c.SSM.SeverityPreReboot,
		"ssm.severity_post_patch": c.SSM.SeverityPostPatch, "ssm.severity_cycle": c.SSM.SeverityCycle} {
		if !slices.Contains(Severities, v) {
			add(key, "%q is not a severity; use one of %v", v, Severities)
		}
	}
	if c.SSM.RetryMax < time.Second {
		add("ssm.retry_max", "must be at least 1s, got %s", c.SSM.RetryMax)
	}
}

// Severity returns the configured severity of a phase's hook items.
func (s SSM) Severity(phase string) string {
	switch phase {
	case "pre-patch":
		return s.SeverityPrePatch
	case "pre-reboot":
		return s.SeverityPreReboot
	case "post-patch":
		return s.SeverityPostPatch
	}
	return s.SeverityCycle
}
