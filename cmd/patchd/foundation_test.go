package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestVersionAndUsageExitCodes(t *testing.T) {
	code, out, _ := runPatchd(t, "version")
	if code != 0 || !strings.Contains(out, "patchd, version") {
		t.Fatalf("patchd version: code %d, out %q", code, out)
	}
	for _, args := range [][]string{{"--help"}, {"hooks", "--help"}, {"--version"}, {"help"}, {"help", "hooks", "run"}} {
		code, out, errOut := runPatchd(t, args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "patchd") {
			t.Errorf("patchd %v: code %d, stderr %q", args, code, errOut)
		}
		// Printed once, and nothing after it: kingpin goes on after its
		// exit unless run stops it.
		wantUsage := 1
		if args[0] == "--version" {
			wantUsage = 0
		}
		if n := strings.Count(out, "usage: patchd"); n != wantUsage {
			t.Errorf("patchd %v: the usage is printed %d times, want %d:\n%s", args, n, wantUsage, out)
		}
	}
	code, _, errOut := runPatchd(t, "no-such-command")
	if code != exitUsage || !strings.Contains(errOut, "patchd --help") {
		t.Fatalf("unknown command: code %d, stderr %q", code, errOut)
	}
}

func TestCheckExitCodes(t *testing.T) {
	tr := newTestTree(t)
	code, out, errOut := runPatchd(t, append([]string{"check"}, tr.flags()...)...)
	if code != 0 {
		t.Fatalf("check on a good tree: code %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	bad := "paths:\n  hookz: /x\nhooks:\n  timeout: 5x\nlog:\n  level: loud\n"
	if err := os.WriteFile(tr.Config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runPatchd(t, append([]string{"check"}, tr.flags()...)...)
	if code != exitUsage {
		t.Fatalf("check on a broken config: code %d, want %d", code, exitUsage)
	}
	for _, want := range []string{
		tr.Config + ":2: paths.hookz: unknown key",
		tr.Config + ":4: hooks.timeout: wrong type",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut)
		}
	}
	// A named config file that does not exist is an error; the default
	// one missing is not (tested by every other test using an empty file).
	code, _, errOut = runPatchd(t, "check", "--config.file="+filepath.Join(tr.Root, "missing.yaml"), "--path.hooks="+tr.Hooks)
	if code != exitUsage || !strings.Contains(errOut, "missing.yaml") {
		t.Fatalf("missing config: code %d stderr %q", code, errOut)
	}
}

func TestRunServesMetricsLintedByPromtoolAndStopsOnSIGTERM(t *testing.T) {
	tr := newTestTree(t)
	addr := freePort(t)
	p := startDaemon(t, tr, "--web.listen-address="+addr)
	body := httpGet(t, http.DefaultClient, "http://"+addr+"/metrics", http.StatusOK)
	for _, want := range []string{"patchd_build_info{", "go_goroutines ", "process_resident_memory_bytes ", "patchd_config_last_reload_successful 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	promtoolCheck(t, body)
	took, err := p.stop(t, syscall.SIGTERM, 10*time.Second)
	if err != nil {
		t.Fatalf("patchd exited with %v after SIGTERM\n%s", err, p.stderr.String())
	}
	t.Logf("stopped %s after SIGTERM", took)
}

// promtoolCheck lints an exposition with promtool when it is installed; CI
// installs it (the Debian prometheus package), and PATCHD_REQUIRE_PROMTOOL=1
// turns its absence into a failure.
func promtoolCheck(t *testing.T, exposition string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("PATCHD_REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool not found; apt-get install prometheus")
		}
		t.Log("promtool not installed; metrics lint skipped")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func httpGet(t *testing.T, c *http.Client, url string, wantStatus int) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: status %d, want %d\n%s", url, resp.StatusCode, wantStatus, b)
	}
	return string(b)
}

func TestReloadRejectsInvalidConfigAndKeepsRunning(t *testing.T) {
	tr := newTestTree(t)
	addr := freePort(t)
	if err := os.WriteFile(tr.Config, []byte(testIMDSConfig+"log:\n  level: info\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startDaemon(t, tr, "--web.listen-address="+addr)
	if err := os.WriteFile(tr.Config, []byte(testIMDSConfig+"log:\n  level: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "reload rejected", func() bool {
		return strings.Contains(httpGet(t, http.DefaultClient, "http://"+addr+"/metrics", 200), "patchd_config_last_reload_successful 0")
	})
	if !strings.Contains(p.stderr.String(), "configuration reload rejected") {
		t.Fatalf("no log line says why the reload was rejected:\n%s", p.stderr.String())
	}
	if err := os.WriteFile(tr.Config, []byte(testIMDSConfig+"log:\n  level: debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "reload accepted", func() bool {
		return strings.Contains(httpGet(t, http.DefaultClient, "http://"+addr+"/metrics", 200), "patchd_config_last_reload_successful 1")
	})
}

func TestWebConfigEnforcesTLSAndBasicAuth(t *testing.T) {
	tr := newTestTree(t)
	certFile, keyFile, pool := selfSignedCert(t, tr.Root)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(tr.Root, "web.yml")
	content := "tls_server_config:\n  cert_file: " + certFile + "\n  key_file: " + keyFile +
		"\nbasic_auth_users:\n  prometheus: " + string(hash) + "\n"
	if err := os.WriteFile(webCfg, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	startDaemon(t, tr, "--web.listen-address="+addr, "--web.config.file="+webCfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	url := "https://" + addr + "/metrics"

	// Plain HTTP is refused: the server only speaks TLS.
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.Contains(string(b), "patchd_build_info") {
			t.Fatal("plain HTTP served metrics although TLS is configured")
		}
	}
	httpGet(t, client, url, http.StatusUnauthorized)
	req, _ := http.NewRequest("GET", url, nil)
	req.SetBasicAuth("prometheus", "wrong")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	req.SetBasicAuth("prometheus", "s3cret")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "patchd_build_info") {
		t.Fatalf("with credentials: status %d\n%s", resp.StatusCode, b)
	}
}

func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServiceInstallRefusesPackagedUnit(t *testing.T) {
	unit := filepath.Join(t.TempDir(), "patchd.service")
	if err := os.WriteFile(unit, []byte("[Service]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := packagedUnit
	packagedUnit = unit
	defer func() { packagedUnit = old }()
	stderr := captureStderr(t, func() {
		if code := serviceAction("install", nil); code != exitFailure {
			t.Fatalf("install with a packaged unit: code %d, want %d", code, exitFailure)
		}
	})
	if !strings.Contains(stderr, unit) || !strings.Contains(stderr, "systemctl enable --now patchd") {
		t.Fatalf("message does not name the unit and the fix: %q", stderr)
	}
}

func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	f()
	os.Stderr = old
	w.Close()
	return <-done
}
