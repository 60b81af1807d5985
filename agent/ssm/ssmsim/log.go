package ssmsim

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Log file names under the agent's log directory.
const (
	AgentLogName  = "amazon-ssm-agent.log"
	ErrorsLogName = "errors.log"
)

// Log writes agent log lines the way seelog does with the agent's default
// configuration (seelog_unix.xml and agent/log/logger/defaultconfig.go in
// github.com/aws/amazon-ssm-agent):
//
//	amazon-ssm-agent.log: %Date(2006-01-02 15:04:05.0000) %LEVEL %Msg%n
//	errors.log (ERROR, CRITICAL): %Date(...) %LEVEL [%FuncShort @ %File.%Line] %Msg%n
//
// and rolls by size the way seelog's rollingfile does: the full file is
// renamed to <name>.<N> with N one above the highest existing, the lowest
// numbers beyond MaxRolls are deleted, and the next line re-creates the
// file (lazily: nothing exists between the rename and that line).
type Log struct {
	Dir string
	// MaxSize rolls a file before a line would take it past this many
	// bytes; 0 never rolls on its own (Rotate still does).
	MaxSize int64
	// MaxRolls is how many rolled files are kept (the agent keeps 5).
	MaxRolls int
	// OldFormat writes timestamps without fractions (agents before 3.3.808.0).
	OldFormat bool
	Now       func() time.Time

	mu sync.Mutex
}

// NewLog returns a log in dir with the agent's defaults (no size limit).
func NewLog(dir string) *Log { return &Log{Dir: dir, MaxRolls: 5} }

func (l *Log) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Log) stamp() string {
	if l.OldFormat {
		return l.now().Format("2006-01-02 15:04:05")
	}
	return l.now().Format("2006-01-02 15:04:05.0000")
}

// Line writes one entry. tags are the context tags ("[ssm-agent-worker]
// [MessageService]"), may be empty; msg may span several lines.
func (l *Log) Line(level, tags, msg string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	level = strings.ToUpper(level)
	body := msg
	if tags != "" {
		body = tags + " " + msg
	}
	ts := l.stamp()
	if err := l.append(AgentLogName, fmt.Sprintf("%s %s %s\n", ts, level, body)); err != nil {
		return err
	}
	if level == "ERROR" || level == "CRITICAL" {
		return l.append(ErrorsLogName, fmt.Sprintf("%s %s [simulated @ sim.go.1] %s\n", ts, level, body))
	}
	return nil
}

// Raw appends text as it is (continuation lines, lines of other writers).
func (l *Log) Raw(text string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.append(AgentLogName, text)
}

func (l *Log) append(name, line string) error {
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return err
	}
	p := filepath.Join(l.Dir, name)
	if l.MaxSize > 0 {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 0 && fi.Size()+int64(len(line)) > l.MaxSize {
			if err := l.roll(name); err != nil {
				return err
			}
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Rotate rolls the agent log now, as if it had reached its size.
func (l *Log) Rotate() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.roll(AgentLogName)
}

func (l *Log) roll(name string) error {
	p := filepath.Join(l.Dir, name)
	if _, err := os.Stat(p); err != nil {
		return nil // nothing to roll: the file is re-created lazily
	}
	nums := l.rolled(name)
	next := 1
	if len(nums) > 0 {
		next = nums[len(nums)-1] + 1
	}
	if err := os.Rename(p, fmt.Sprintf("%s.%d", p, next)); err != nil {
		return err
	}
	nums = append(nums, next)
	keep := l.MaxRolls
	if keep <= 0 {
		keep = 5
	}
	for len(nums) > keep {
		_ = os.Remove(fmt.Sprintf("%s.%d", p, nums[0]))
		nums = nums[1:]
	}
	return nil
}

func (l *Log) rolled(name string) []int {
	entries, _ := os.ReadDir(l.Dir)
	var nums []int
	for _, e := range entries {
		if n, ok := strings.CutPrefix(e.Name(), name+"."); ok {
			if i, err := strconv.Atoi(n); err == nil {
				nums = append(nums, i)
			}
		}
	}
	sort.Ints(nums)
	return nums
}
