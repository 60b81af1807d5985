package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// exampleFile is the commented configuration the packages install as
// /etc/patchd/patchd.yaml.
const exampleFile = "../../packaging/patchd.yaml"

// settingLine is a commented-out setting: "# key: value" at the key's indent.
// Prose comments never start with a lower-case word and a colon.
var settingLine = regexp.MustCompile(`^(\s*)# ([a-z_]+:(?: .*)?)$`)

// uncomment turns every commented-out setting of the example into a live one,
// leaving the prose comments alone.
func uncomment(data []byte) []byte {
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		lines[i] = settingLine.ReplaceAllString(l, "$1$2")
	}
	return []byte(strings.Join(lines, "\n"))
}

// normalize makes empty and nil lists compare equal: "[]" in the file
// decodes to an empty list where the default is nil, and both mean the same.
func normalize(c Config) Config {
	if len(c.Cycle.ExtraDocuments) == 0 {
		c.Cycle.ExtraDocuments = nil
	}
	if len(c.AgentLog.Files) == 0 {
		c.AgentLog.Files = nil
	}
	if len(c.Hooks.PhaseTimeouts) == 0 {
		c.Hooks.PhaseTimeouts = map[string]time.Duration{}
	}
	return c
}

func readExample(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatalf("the packaged example configuration must exist: %v", err)
	}
	return data
}

// fileKeys lists the dotted keys a YAML document sets (sections and their
// keys, as walkKeys names them).
func fileKeys(t *testing.T, data []byte) []string {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatalf("uncommented example is not YAML: %v", err)
	}
	var keys []string
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		if n.Kind == yaml.DocumentNode {
			for _, c := range n.Content {
				walk(prefix, c)
			}
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if prefix != "" {
				k = prefix + "." + k
			}
			keys = append(keys, k)
			if prefix == "" {
				walk(k, n.Content[i+1])
			}
		}
	}
	walk("", &root)
	return keys
}

func TestExampleConfig(t *testing.T) {
	data := readExample(t)
	live := uncomment(data)

	tests := []struct {
		name  string
		data  []byte
		start Config
	}{
		// As shipped: parses and changes nothing.
		{"as shipped", data, Default()},
		// Every documented value uncommented, decoded over an empty
		// configuration: each key is valid and its value is the default.
		{"all uncommented over zero", live, Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.start
			if err := Parse(exampleFile, tt.data, &cfg); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got, want := normalize(cfg), normalize(Default()); !reflect.DeepEqual(got, want) {
				t.Errorf("example does not give the defaults:\n got  %+v\n want %+v", got, want)
			}
		})
	}

	t.Run("mentions every key", func(t *testing.T) {
		var want []string
		walkKeys(Default(), func(k string) { want = append(want, k) })
		got := fileKeys(t, live)
		for _, k := range want {
			if !slices.Contains(got, k) {
				t.Errorf("%s: key %s is not documented; add it, commented out with its default", exampleFile, k)
			}
		}
		for _, k := range got {
			if slices.Contains(got[:slices.Index(got, k)], k) {
				t.Errorf("%s: key %s appears twice", exampleFile, k)
			}
		}
	})

	t.Run("every setting has a comment above it", func(t *testing.T) {
		lines := strings.Split(string(data), "\n")
		n := 0
		for i, l := range lines {
			m := settingLine.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			n++
			if i == 0 || !strings.HasPrefix(lines[i-1], m[1]+"# ") || settingLine.MatchString(lines[i-1]) {
				t.Errorf("%s:%d: %s has no explanation in the comment line above it", exampleFile, i+1, strings.TrimSpace(m[2]))
			}
		}
		if n == 0 {
			t.Fatalf("%s: no commented-out settings found", exampleFile)
		}
	})
}
