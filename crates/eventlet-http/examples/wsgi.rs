//! eventlet's `wsgi` hello world: every request gets "Hello, World!".
//!
//! ```text
//! cargo run --release --example wsgi            # serves on 127.0.0.1:8090
//! cargo run --release --example wsgi -- 0.0.0.0:8080
//! curl http://127.0.0.1:8090/
//! ```
//!
//! Logs each request in eventlet's access log format. With `--once`, it
//! answers one request and exits (used by the tests).

use eventlet_http::{Body, Server};

fn hello_world(_req: http::Request<Body>) -> http::Response<Body> {
    http::Response::builder()
        .header("Content-Type", "text/plain")
        .body(Body::from("Hello, World!\r\n"))
        .expect("a valid response")
}

fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:8090".to_string();
    let mut once = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--once" => once = true,
            _ => addr = arg,
        }
    }
    let server = Server::bind(addr.as_str())?.access_log(true);
    eprintln!("(wsgi) listening on http://{}/", server.local_addr()?);
    if once {
        let stop = server.shutdown_handle();
        return server.serve(move |req| {
            stop.shutdown();
            hello_world(req)
        });
    }
    server.serve(hello_world)
}
