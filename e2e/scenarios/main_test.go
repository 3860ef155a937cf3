package scenarios

import (
	"os"
	"testing"

	"github.com/clustermesh/clustermesh/e2e/bed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	bed.RemoveBinaries()
	os.Exit(code)
}
