package policytrace_test

import (
	"testing"

	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
