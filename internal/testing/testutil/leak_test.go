package testutil

import (
	"strings"
	"testing"
	"time"
)

// findLeaks reports a goroutine that outlives its wait, naming its
// function, and returns nil once it has ended.
func TestFindLeaks(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go leakyForTest(stop, done)
	err := findLeaks(200 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "leakyForTest") {
		t.Fatalf("findLeaks with a goroutine running: %v, want a report naming leakyForTest", err)
	}
	close(stop)
	<-done
	if err := findLeaks(5 * time.Second); err != nil {
		t.Fatalf("findLeaks after the goroutine ended: %v", err)
	}
}

func leakyForTest(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	<-stop
}
