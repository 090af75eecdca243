// Echo peer for eventlet-bench: one goroutine per connection, GOMAXPROCS=PROCS (1 by default).
//
//	go run echo.go 127.0.0.1:6000
package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
)

func handle(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: echo ADDR [PROCS]")
		os.Exit(2)
	}
	procs := 1
	if len(os.Args) == 3 {
		n, err := strconv.Atoi(os.Args[2])
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "echo: PROCS must be a positive number")
			os.Exit(2)
		}
		procs = n
	}
	runtime.GOMAXPROCS(procs)
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo: accept:", err)
			continue
		}
		go handle(c)
	}
}
