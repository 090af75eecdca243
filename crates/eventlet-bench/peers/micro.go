// The Go peer of eventlet-bench's `spawn` and `switch` scenarios.
//
//	spawn:  start a goroutine, let it run, and wait for it to finish (it
//	        sends on an unbuffered channel), one at a time.
//	switch: a ping-pong round trip between two goroutines over two
//	        unbuffered channels.
//
// Usage: micro spawn|switch MILLIS. Measures for MILLIS ms after a warm-up of
// a tenth of that and prints nanoseconds per spawn + run + join, or per round
// trip. Run it with GOMAXPROCS=1, pinned to one CPU.
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

// spawn measures goroutine start + run + join.
func spawn(budget time.Duration) float64 {
	done := make(chan int)
	sink := 0
	run := func(k int64) {
		for i := int64(0); i < k; i++ {
			go func() { done <- 1 }()
			sink += <-done
		}
	}
	measure(budget/10, run)
	ns := measure(budget, run)
	if sink == 0 {
		os.Exit(1)
	}
	return ns
}

// pingPong measures a round trip over two unbuffered channels.
func pingPong(budget time.Duration) float64 {
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
	return ns
}

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "spawn" && os.Args[1] != "switch") {
		fmt.Fprintln(os.Stderr, "usage: micro spawn|switch MILLIS")
		os.Exit(2)
	}
	ms, err := strconv.Atoi(os.Args[2])
	if err != nil || ms <= 0 {
		fmt.Fprintln(os.Stderr, "micro: MILLIS must be a positive number")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1)
	budget := time.Duration(ms) * time.Millisecond
	var ns float64
	if os.Args[1] == "spawn" {
		ns = spawn(budget)
	} else {
		ns = pingPong(budget)
	}
	fmt.Printf("%.3f\n", ns)
}
