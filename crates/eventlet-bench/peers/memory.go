// The Go peer of eventlet-bench's `memory` scenario: N goroutines blocked
// at once, each receiving from a channel nobody sends on.
//
// Usage: memory N. Starts N goroutines, waits until every one has started,
// and prints this process's resident set size in bytes (/proc/self/statm).
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// rss returns this process's resident set size in bytes.
func rss() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("bad /proc/self/statm: %q", b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: memory N")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "memory: N must be a positive number")
		os.Exit(2)
	}
	block := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-block
		}()
	}
	started.Wait()
	bytes, err := rss()
	if err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
		os.Exit(1)
	}
	fmt.Println(bytes)
	// Exit without waking anyone: the goroutines are still blocked.
	os.Exit(0)
}
