//! The chat example in real browsers: two headless Chromium windows (Python
//! selenium with chromium-driver) chat over wss, each window's green thread
//! parked reading its TLS connection while the other's writes to it, with
//! permessage-deflate, which Chromium offers on every WebSocket.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use util::{example_binary, KillOnDrop};

const CHAT_IN_CHROMIUM: &str = r#"
import shutil, sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

url = sys.argv[1]
chromium, chromedriver = shutil.which(sys.argv[2]) or sys.argv[2], shutil.which(sys.argv[3]) or sys.argv[3]
def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = chromium
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--ignore-certificate-errors", "--user-data-dir=/tmp/eventlet-chromium-%d-%f" % (id(o), time.time())]:
        o.add_argument(a)
    return webdriver.Chrome(service=Service(chromedriver), options=o)

def wait(cond, what, limit=20):
    end = time.time() + limit
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit("timed out waiting for " + what)

a, b = browser(), browser()
try:
    for d in (a, b):
        d.get(url)
        wait(lambda: d.find_element(By.ID, "status").text == "connected", "connected")
    ext = a.execute_script("return ws.extensions")
    a.find_element(By.ID, "say").send_keys("hello from A" + Keys.ENTER)
    b.find_element(By.ID, "say").send_keys("hi from B " * 200 + Keys.ENTER)
    for d in (a, b):
        wait(lambda: "hello from A" in d.find_element(By.ID, "log").text
             and "hi from B hi from B" in d.find_element(By.ID, "log").text, "both messages")
    print("extensions:", ext)
    print("ok")
finally:
    a.quit()
    b.quit()
"#;

#[test]
fn chat_over_wss_between_two_chromium_windows() {
    let Some(chromium) = util::tool("chromium") else { return };
    let Some(chromedriver) = util::tool("chromedriver") else { return };
    let Some(py) = util::python_with("selenium") else { return };
    let dir = std::env::temp_dir().join(format!("eventlet-http-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    util::make_certs(&dir);
    let mut chat = KillOnDrop(
        Command::new(example_binary("websocket_chat"))
            .args([
                "127.0.0.1:0",
                &dir.join("srv.pem").display().to_string(),
                &dir.join("srv.key").display().to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(chat.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("chat on ").unwrap().to_string();
    assert!(url.starts_with("https://"), "{url}");
    let out = Command::new(&py).args(["-c", CHAT_IN_CHROMIUM, &url, &chromium, &chromedriver]).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("extensions: permessage-deflate"), "Chromium did not agree permessage-deflate: {stdout}");
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}
