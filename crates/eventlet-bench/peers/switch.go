// The Go peer of eventlet-bench's `switch` scenario: a ping-pong round trip
// between two goroutines over two unbuffered channels.
//
// Usage: switch MILLIS. Measures for MILLIS ms after a warm-up of a tenth
// of that and prints nanoseconds per round trip. Run it with GOMAXPROCS=1,
// pinned to one CPU.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

// measure runs run(k) in growing batches until budget has passed and
// returns nanoseconds per iteration (the same loop as the harness's Meter).
func measure(budget time.Duration, run func(k int64)) float64 {
	const maxIters = int64(1) << 32
	start := time.Now()
	done, batch := int64(0), int64(1)
	for {
		run(batch)
		done += batch
		elapsed := time.Since(start)
		if elapsed >= budget || done >= maxIters {
			return float64(elapsed.Nanoseconds()) / float64(done)
		}
		perIter := elapsed.Nanoseconds() / done
		if perIter < 1 {
			perIter = 1
		}
		batch = done + 1
		if fits := int64(budget-elapsed) / perIter; fits < batch {
			batch = fits
		}
		if batch < 1 {
			batch = 1
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: switch MILLIS")
		os.Exit(2)
	}
	ms, err := strconv.Atoi(os.Args[1])
	if err != nil || ms <= 0 {
		fmt.Fprintln(os.Stderr, "switch: MILLIS must be a positive number")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1)
	budget := time.Duration(ms) * time.Millisecond
	ping, pong := make(chan int64), make(chan int64)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	run := func(k int64) {
		for i := int64(0); i < k; i++ {
			ping <- i
			if <-pong != i {
				panic("switch: reply out of order")
			}
		}
	}
	measure(budget/10, run)
	ns := measure(budget, run)
	close(ping)
	<-pong
	fmt.Printf("%.3f\n", ns)
}
