//! `https://` through the green client against a server no one here wrote
//! (Python's `http.server` wrapped in `ssl`), with a CA made by `openssl`
//! for the test.
#![cfg(feature = "tls")]

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use eventlet_http::Client;
use util::{make_certs, pattern, KillOnDrop};

const PY_HTTPS: &str = r#"
import http.server, ssl, sys, os
os.chdir(sys.argv[1])
httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("srv.pem", "srv.key")
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;

#[test]
fn https_fetch_with_custom_ca_is_byte_exact() {
    let Some(py) = util::tool("python3") else { return };
    let dir = std::env::temp_dir().join(format!("eventlet-http-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certs(&dir);
    let data = pattern(150_000);
    std::fs::write(dir.join("file.bin"), &data).unwrap();
    let mut server = KillOnDrop(
        Command::new(py)
            .args(["-c", PY_HTTPS, &dir.display().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut port = String::new();
    BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut port).unwrap();
    let url = format!("https://127.0.0.1:{}/file.bin", port.trim());

    let client = Client::builder().ca_file(dir.join("ca.pem")).unwrap().build();
    let resp = client.get(&url).unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.into_body().into_bytes().unwrap() == data);

    // The bundled Mozilla roots do not trust the test CA.
    let e = Client::new().get(&url).unwrap_err();
    assert!(e.to_string().to_lowercase().contains("cert"), "{e}");

    // A file with no certificate is refused up front.
    std::fs::write(dir.join("empty.pem"), "nothing here").unwrap();
    assert!(Client::builder().ca_file(dir.join("empty.pem")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
