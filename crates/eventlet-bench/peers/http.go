// HTTP peer for eventlet-bench: net/http answering "Hello, World!" with
// keep-alive, GOMAXPROCS=1.
//
//	go run http.go 127.0.0.1:8080
package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
)

var body = []byte("Hello, World!")

func hello(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", "13")
	w.Write(body)
}

func main() {
	runtime.GOMAXPROCS(1)
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: http ADDR")
		os.Exit(2)
	}
	if err := http.ListenAndServe(os.Args[1], http.HandlerFunc(hello)); err != nil {
		fmt.Fprintln(os.Stderr, "http:", err)
		os.Exit(1)
	}
}
