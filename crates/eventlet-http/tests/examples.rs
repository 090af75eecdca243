//! The examples run and do what they say.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use util::{example_binary, routes, run, spawn_server, KillOnDrop};

/// Runs a command (with small output), killing it if it takes more than 30 s.
fn output_bounded(cmd: &mut Command) -> (ExitStatus, String, String) {
    let mut child = KillOnDrop(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "example did not finish in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status, out, err)
}

#[test]
fn webcrawler_crawls_its_own_pages_offline() {
    let (status, stdout, stderr) = output_bounded(&mut Command::new(example_binary("webcrawler")));
    assert!(status.success(), "{stderr}");
    let expected: Vec<String> = (1..=5).map(|n| format!("got body {}", n * 1024)).collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn webcrawler_crawls_urls_from_the_command_line_in_order() {
    let addr = spawn_server(|s| s, routes);
    let urls: Vec<String> =
        ["/stream?70000", "/slow", "/", "/stream?3"].iter().map(|p| format!("http://{addr}{p}")).collect();
    let (status, stdout, stderr) = output_bounded(Command::new(example_binary("webcrawler")).args(&urls));
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["got body 70000", "got body 4", "got body 5", "got body 3"]);
    // A URL that cannot be fetched is an error, as `body?` says.
    let (status, _, stderr) = output_bounded(Command::new(example_binary("webcrawler")).arg("http://127.0.0.1:1/"));
    assert!(!status.success() && stderr.contains("refused"), "{stderr}");
}

#[test]
fn wsgi_example_says_hello_and_logs() {
    let Some(curl) = util::tool("curl") else { return };
    let mut child = KillOnDrop(
        Command::new(example_binary("wsgi")).args(["127.0.0.1:0", "--once"]).stderr(Stdio::piped()).spawn().unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("(wsgi) listening on ").expect(&line).to_string();
    let (body, _) = run(&curl, &["-s", "--max-time", "10", &url]);
    assert_eq!(body, b"Hello, World!\r\n");
    line.clear();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("127.0.0.1 - - [") && line.contains("\"GET / HTTP/1.1\" 200 15 "), "{line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "wsgi --once did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn feedscraper_fans_out_and_combines_in_order() {
    let (status, stdout, stderr) = output_bounded(&mut Command::new(example_binary("feedscraper")));
    assert!(status.success(), "{stderr}");
    let sizes: Vec<&str> = stdout.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(sizes, ["100", "2000", "30"], "{stdout}");
    assert!(stdout.lines().all(|l| l.starts_with("http://127.0.0.1:")), "{stdout}");
}

/// The crawler example trusts what curl trusts: the CA file named by
/// `SSL_CERT_FILE` (it trusted only the bundled roots).
#[cfg(feature = "tls")]
#[test]
fn webcrawler_honours_ssl_cert_file() {
    let dir = std::env::temp_dir().join(format!("eventlet-http-ssl-cert-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    util::make_certs(&dir);
    let (cert, key) = (dir.join("srv.pem"), dir.join("srv.key"));
    let addr = spawn_server(move |s| s.tls_files(cert, key).unwrap(), routes);
    let url = format!("https://127.0.0.1:{}/stream?1234", addr.port());
    let (status, stdout, stderr) =
        output_bounded(Command::new(example_binary("webcrawler")).arg(&url).env("SSL_CERT_FILE", dir.join("ca.pem")));
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "got body 1234");
    // Another CA file: the certificate is refused.
    std::fs::write(dir.join("other.pem"), std::fs::read(dir.join("srv.pem")).unwrap()).unwrap();
    let (status, _, stderr) = output_bounded(
        Command::new(example_binary("webcrawler")).arg(&url).env("SSL_CERT_FILE", dir.join("other.pem")),
    );
    assert!(!status.success(), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
