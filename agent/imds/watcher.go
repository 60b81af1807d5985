package imds

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Watcher.
type Options struct {
	// Endpoint overrides the IMDS address; empty is EndpointEnv when set,
	// else the SDK's default (http://169.254.169.254).
	Endpoint string
	// PollInterval is the longest time between two reads; each wait is
	// shortened by up to a tenth at random so that a fleet does not poll in
	// step, and a change is still seen within one interval.
	PollInterval time.Duration
	// Timeout bounds one HTTP exchange (token or read), body included.
	Timeout time.Duration
	// MaxAttempts and MaxBackoff shape the SDK's retries of one read
	// (defaults 3 and 1s).
	MaxAttempts int
	MaxBackoff  time.Duration
	// StateDir holds role.json.
	StateDir   string
	Clock      clockwork.Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnObserve gets every answer (not the ones cut short by a stop). For a
	// role change it is called before role.json records the new identity, so
	// a crash in between sees the change again at start; it must be quick.
	OnObserve func(Observation)
}

// Observation is the result of one poll.
type Observation struct {
	Time time.Time
	// Known is false when IMDS could not be read; Identity is then the last
	// known one and Changed is false: a failure is never a change.
	Known bool
	Err   *Error
	// Identity is the current identity; not Attached when the instance has
	// no instance profile.
	Identity Identity
	// ServesCredentials is whether IMDS hands out credentials for the role
	// right now (iam/security-credentials/<role> answers Code "Success").
	ServesCredentials bool
	// Changed marks a role change (see Decide); Previous is the last profile
	// seen before it and Reason says what changed.
	Changed  bool
	Previous Identity
	Reason   string
}

// Watcher polls IMDS for the instance's identity.
type Watcher struct {
	opts    Options
	log     *slog.Logger
	clock   clockwork.Clock
	path    string
	pollNow chan struct{}

	errors  *prometheus.CounterVec
	info    *prometheus.GaugeVec
	changes prometheus.Counter

	// pollMu serialises polls; mu guards the fields below it.
	pollMu  sync.Mutex
	mu      sync.Mutex
	cfg     Options
	client  *sdkimds.Client
	state   State
	known   bool
	last    Observation
	failing bool
}

// New builds a watcher and restores the last known identity from
// <StateDir>/role.json. A damaged file is logged and treated as absent.
func New(opts Options) (*Watcher, error) {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 3
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Second
	}
	if opts.PollInterval <= 0 {
		return nil, fmt.Errorf("imds: poll interval must be positive, got %s", opts.PollInterval)
	}
	if opts.Timeout <= 0 {
		return nil, fmt.Errorf("imds: timeout must be positive, got %s", opts.Timeout)
	}
	w := &Watcher{
		opts:    opts,
		log:     opts.Logger,
		clock:   opts.Clock,
		path:    filepath.Join(opts.StateDir, StateFileName),
		pollNow: make(chan struct{}, 1),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_imds_errors_total",
			Help: "Failed reads of the instance's identity from IMDS, by kind (timeout, unauthorized, not_found, throttled, server_error, bad_response, connection).",
		}, []string{"kind"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchd_role_info",
			Help: "The instance profile (ARN) and role last seen in IMDS; empty labels when none is attached.",
		}, []string{"instance_profile", "role"}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchd_role_changes_total",
			Help: "Changes of the instance profile or role seen in IMDS (including one attached where there was none).",
		}),
	}
	for _, k := range Kinds {
		w.errors.WithLabelValues(k)
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{w.errors, w.info, w.changes} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("imds: registering metrics: %w", err)
			}
		}
	}
	st, ok, err := LoadState(w.path)
	if err != nil {
		w.log.Error("ignoring the saved role state; the next IMDS answer becomes the baseline", "err", err)
	}
	w.state, w.known = st, ok
	if ok {
		cur := Identity{}
		if st.Attached {
			cur = st.Profile
		}
		w.last = Observation{Identity: cur}
		w.setInfo(cur)
	}
	w.cfg = opts
	w.client = newClient(opts)
	return w, nil
}

func newClient(o Options) *sdkimds.Client {
	dialer := &net.Dialer{Timeout: o.Timeout}
	hc := &http.Client{
		Timeout: o.Timeout,
		// No proxy: IMDS is link-local and must never go through one.
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			ResponseHeaderTimeout: o.Timeout,
			MaxIdleConns:          2,
			IdleConnTimeout:       90 * time.Second,
		},
	}
	return sdkimds.New(sdkimds.Options{
		Endpoint:          ResolveEndpoint(o.Endpoint),
		ClientEnableState: sdkimds.ClientEnabled,
		// IMDSv2 only: falling back to v1 after a failed token request
		// would hide the failure and keep using the insecure flow.
		EnableFallback:        aws.FalseTernary,
		HTTPClient:            recordingClient{hc},
		DisableDefaultTimeout: true,
		// Our retryer's MaxBackoff applies, not the client's fixed 1s.
		DisableDefaultMaxBackoff: true,
		Retryer: retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = o.MaxAttempts
			so.MaxBackoff = o.MaxBackoff
			// The retry quota is for busy services; a poll every minute
			// must never find it exhausted.
			so.RateLimiter = ratelimit.None
		}),
	})
}

// EndpointEnv is the AWS SDKs' and CLI's variable for another IMDS address
// (a local proxy, a test double). The feature/ec2/imds client alone does
// not read it; the config package of the SDK does, and so does patchd.
const EndpointEnv = "AWS_EC2_METADATA_SERVICE_ENDPOINT"

// ResolveEndpoint is the address used: the configured one, else
// EndpointEnv, else "" (the SDK's default).
func ResolveEndpoint(configured string) string {
	if configured != "" {
		return configured
	}
	return os.Getenv(EndpointEnv)
}

// SetConfig applies reloaded settings; the next poll uses them.
func (w *Watcher) SetConfig(endpoint string, pollInterval, timeout time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rebuild := endpoint != w.cfg.Endpoint || timeout != w.cfg.Timeout
	w.cfg.Endpoint, w.cfg.PollInterval, w.cfg.Timeout = endpoint, pollInterval, timeout
	if rebuild {
		w.client = newClient(w.cfg)
	}
}

// Run polls at once and then every poll interval until ctx is done.
func (w *Watcher) Run(ctx context.Context) error {
	for {
		w.Poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.mu.Lock()
		interval := w.cfg.PollInterval
		w.mu.Unlock()
		t := w.clock.NewTimer(interval - rand.N(interval/10+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.Chan():
		case <-w.pollNow:
			t.Stop()
		}
	}
}

// PollSoon asks Run for a poll now rather than at the next interval (the
// keeper does when the agent logs credential errors). It never blocks.
func (w *Watcher) PollSoon() {
	select {
	case w.pollNow <- struct{}{}:
	default:
	}
}

// Current is the last observation (Known false before the first answer).
func (w *Watcher) Current() Observation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// ServesCredentials reports whether the last poll found IMDS handing out
// credentials for a role. An unknown answer is false.
func (w *Watcher) ServesCredentials() bool {
	o := w.Current()
	return o.Known && o.ServesCredentials
}

// Poll reads IMDS once, decides whether the role changed, persists the new
// state and reports the observation.
func (w *Watcher) Poll(ctx context.Context) Observation {
	w.pollMu.Lock()
	defer w.pollMu.Unlock()
	w.mu.Lock()
	client, timeout := w.client, w.cfg.Timeout
	w.mu.Unlock()

	id, serves, rerr := w.read(ctx, client, timeout)
	now := w.clock.Now()
	if ctx.Err() != nil {
		return Observation{Time: now}
	}
	w.mu.Lock()
	if rerr != nil {
		w.errors.WithLabelValues(rerr.Kind).Inc()
		obs := w.last
		obs.Time, obs.Known, obs.Err, obs.ServesCredentials, obs.Changed, obs.Reason = now, false, rerr, false, false, ""
		w.last = obs
		first := !w.failing
		w.failing = true
		w.mu.Unlock()
		if first {
			w.log.Warn("cannot read the instance's identity from IMDS; treating it as unknown (never as a change) until it answers",
				"kind", rerr.Kind, "err", rerr, "hint", hint(rerr.Kind))
		} else {
			w.log.Debug("IMDS still failing", "kind", rerr.Kind, "err", rerr)
		}
		w.report(obs)
		return obs
	}
	prev, known := w.state, w.known
	next, changed, why := Decide(prev, known, id, now)
	obs := Observation{Time: now, Known: true, Identity: id, ServesCredentials: serves, Changed: changed, Previous: prev.Profile, Reason: why}
	w.last = obs
	recovered := w.failing
	w.failing = false
	w.state, w.known = next, true
	w.setInfo(id)
	if changed {
		w.changes.Inc()
	}
	w.mu.Unlock()

	if recovered {
		w.log.Info("IMDS answers again", "identity", id.String())
	}
	switch {
	case changed:
		w.log.Warn("instance role changed", "reason", why, "profile", id.InstanceProfileArn, "profile_id", id.InstanceProfileID, "role", id.Role)
	case !known:
		w.log.Info("instance identity baseline", "identity", id.String(), "serves_credentials", serves)
	case prev.Attached && !id.Attached():
		w.log.Warn("instance profile detached; the agent has no instance credentials until one is attached", "last_profile", prev.Profile.InstanceProfileArn)
	}
	// The observer first: it must record a pending restart before role.json
	// forgets the old identity.
	w.report(obs)
	if !known || next != prev {
		if err := SaveState(w.path, next); err != nil {
			w.log.Error("cannot save the role state; a role change while patchd is down may go unseen", "err", err)
		}
	}
	return obs
}

func (w *Watcher) report(obs Observation) {
	if w.opts.OnObserve != nil {
		w.opts.OnObserve(obs)
	}
}

func (w *Watcher) setInfo(id Identity) {
	w.info.Reset()
	w.info.WithLabelValues(id.InstanceProfileArn, id.Role).Set(1)
}

// read gets the identity and whether credentials are served. A 404 on both
// iam/info and the role list means no instance profile (a real answer, but
// still counted as not_found so that it shows on the dashboard).
func (w *Watcher) read(ctx context.Context, c *sdkimds.Client, timeout time.Duration) (Identity, bool, *Error) {
	// Budget for one read with its retries: every attempt may take the
	// whole timeout, plus the back-off in between.
	budget := time.Duration(w.opts.MaxAttempts)*(2*timeout) + time.Duration(w.opts.MaxAttempts)*w.opts.MaxBackoff

	infoOut, infoErr := op(ctx, budget, "iam/info", func(ctx context.Context) (*sdkimds.GetIAMInfoOutput, error) {
		return c.GetIAMInfo(ctx, &sdkimds.GetIAMInfoInput{})
	})
	if infoErr != nil && infoErr.Kind != KindNotFound {
		return Identity{}, false, infoErr
	}
	list, listErr := op(ctx, budget, "iam/security-credentials/", func(ctx context.Context) (string, error) {
		return getText(ctx, c, "iam/security-credentials/")
	})
	if infoErr != nil {
		if listErr != nil && listErr.Kind == KindNotFound {
			w.errors.WithLabelValues(KindNotFound).Inc()
			return Identity{}, false, nil
		}
		if listErr != nil {
			return Identity{}, false, listErr
		}
		// iam/info missing while a role is listed: IMDS is mid-update;
		// wait for a consistent answer.
		return Identity{}, false, infoErr
	}
	if listErr != nil {
		return Identity{}, false, listErr
	}
	role := firstLine(list)
	if role == "" {
		return Identity{}, false, &Error{Kind: KindBadResponse, Path: "iam/security-credentials/", Err: fmt.Errorf("no role listed although iam/info names profile %s", infoOut.InstanceProfileArn)}
	}
	id := Identity{InstanceProfileArn: infoOut.InstanceProfileArn, InstanceProfileID: infoOut.InstanceProfileID, Role: role}
	credPath := "iam/security-credentials/" + role
	doc, credErr := op(ctx, budget, credPath, func(ctx context.Context) (string, error) {
		return getText(ctx, c, credPath)
	})
	if credErr != nil {
		return Identity{}, false, credErr
	}
	// Only Code is decoded: the keys themselves are never kept.
	var cred struct{ Code string }
	if err := json.Unmarshal([]byte(doc), &cred); err != nil {
		return Identity{}, false, &Error{Kind: KindBadResponse, Path: credPath, Err: fmt.Errorf("credentials document is not JSON: %w", err)}
	}
	return id, strings.EqualFold(cred.Code, "Success"), nil
}

// op runs one SDK operation with its own recorder and budget and turns a
// failure into an *Error.
func op[T any](ctx context.Context, budget time.Duration, path string, f func(context.Context) (T, error)) (T, *Error) {
	rec := &recorder{}
	octx, cancel := context.WithTimeout(withRecorder(ctx, rec), budget)
	defer cancel()
	v, err := f(octx)
	if err != nil {
		return v, &Error{Kind: classify(err, rec), Path: path, Err: err}
	}
	return v, nil
}

func getText(ctx context.Context, c *sdkimds.Client, path string) (string, error) {
	out, err := c.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	// The SDK has read the whole body already, within MaxAnswerSize.
	b, err := io.ReadAll(out.Content)
	return string(b), err
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// hint says what an operator can check for each kind of failure.
func hint(kind string) string {
	switch kind {
	case KindTimeout, KindConnection:
		return "is IMDS enabled for this instance (http-endpoint enabled) and reachable; in a container, is the hop limit at least 2? (aws ec2 describe-instances, MetadataOptions)"
	case KindUnauthorized:
		return "IMDS refused the IMDSv2 token; check the instance's metadata options (http-tokens, hop limit)"
	case KindNotFound:
		return "the path is missing; is an instance profile attached?"
	case KindThrottled:
		return "IMDS is throttling this instance; something else may be polling it hard"
	case KindServerError:
		return "IMDS failed on its side; it usually recovers by itself"
	}
	return "IMDS answered something patchd cannot read; see err"
}
