package startuptest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// forbiddenDeps are packages (and what is under them) patchd must not
// link: every linked package's init runs at every start, whatever the
// command. The SDK's config module and the clients it links for credential
// chains patchd does not use (SSO, SSO OIDC, STS, Sign-In) cost ~3 MiB RSS
// and ~1 ms of init, even with ssm.report off; agent/compliance/chain.go
// finds credentials and the region without them.
var forbiddenDeps = []string{
	"github.com/aws/aws-sdk-go-v2/config",
	"github.com/aws/aws-sdk-go-v2/service/sso",
	"github.com/aws/aws-sdk-go-v2/service/ssooidc",
	"github.com/aws/aws-sdk-go-v2/service/sts",
	"github.com/aws/aws-sdk-go-v2/service/signin",
}

func TestNoForbiddenDependencies(t *testing.T) {
	list := exec.Command("go", "list", "-deps", "github.com/patchd/patchd/cmd/patchd")
	// As the release binary is built (see buildRelease).
	list.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("only %d packages listed: %s", len(deps), out)
	}
	for _, pkg := range deps {
		for _, bad := range forbiddenDeps {
			if pkg == bad || strings.HasPrefix(pkg, bad+"/") {
				t.Errorf("patchd links %s, whose init costs every start (see forbiddenDeps)", pkg)
			}
		}
	}
}
