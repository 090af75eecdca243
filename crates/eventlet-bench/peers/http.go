// HTTP peer for eventlet-bench: net/http answering "Hello, World!" with
// keep-alive, GOMAXPROCS=PROCS (1 by default).
//
//	go run http.go 127.0.0.1:8080
package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
)

var body = []byte("Hello, World!")

func hello(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if r.URL.Path == "/plaintext" {
		// TechEmpower's plaintext test asks for a Server header.
		h.Set("Server", "Go")
	}
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", "13")
	w.Write(body)
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: http ADDR [PROCS]")
		os.Exit(2)
	}
	procs := 1
	if len(os.Args) == 3 {
		n, err := strconv.Atoi(os.Args[2])
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "http: PROCS must be a positive number")
			os.Exit(2)
		}
		procs = n
	}
	runtime.GOMAXPROCS(procs)
	if err := http.ListenAndServe(os.Args[1], http.HandlerFunc(hello)); err != nil {
		fmt.Fprintln(os.Stderr, "http:", err)
		os.Exit(1)
	}
}
