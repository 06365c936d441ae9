package localapi

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes checks docs/integration-openapi.yaml describes
// exactly the routes integratorRoutes registers, method by method.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	f, err := os.Open("../../../docs/integration-openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pathRe := regexp.MustCompile(`^  (/[^:]+):$`)
	methodRe := regexp.MustCompile(`^    (get|post|put|delete|patch):$`)
	var documented []string
	path := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := pathRe.FindStringSubmatch(line); m != nil {
			path = m[1]
			continue
		}
		if line != "" && !strings.HasPrefix(line, " ") {
			path = "" // a new top-level section
		}
		if m := methodRe.FindStringSubmatch(line); m != nil && path != "" {
			documented = append(documented, strings.ToUpper(m[1])+" "+path)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, r := range integratorAPI {
		// The PDF route's one path segment is "{jobId}.pdf" to readers.
		served = append(served, strings.Replace(r.pattern, "{file}", "{jobId}.pdf", 1))
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("OpenAPI paths\n  %s\nroutes\n  %s", strings.Join(documented, "\n  "), strings.Join(served, "\n  "))
	}
}
