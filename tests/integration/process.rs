//! The `souk` binary itself: refusing to start without a key, JSON log
//! lines, and a clean close on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix_http::ws::CloseCode;
use serde_json::Value;

use crate::helpers::*;

const SOUK: &str = env!("CARGO_BIN_EXE_souk");

#[test]
fn serve_refuses_to_start_without_a_key_outside_dev_mode() {
    let output = Command::new(SOUK)
        .arg("serve")
        .env_clear()
        .env("SOUK_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SOUK_JWT_SECRET"), "{stderr}");
    assert!(stderr.contains("SOUK_JWT_PUBLIC_KEY"), "{stderr}");
}

#[test]
fn unknown_arguments_print_usage() {
    let output = Command::new(SOUK).arg("launch").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: souk serve"));
}

#[actix_web::test]
async fn sigterm_closes_connections_and_exits_cleanly_with_json_logs() {
    let db = TestDb::create();
    let mut child = Command::new(SOUK)
        .args(["serve", "--no-migrate"])
        .env("SOUK_HTTP_ADDR", "127.0.0.1:0")
        .env("SOUK_DATABASE_URL", &db.url)
        .env("SOUK_REDIS_URL", redis_url())
        .env("SOUK_JWT_SECRET", SECRET)
        .env("SOUK_SHUTDOWN_GRACE_MS", "3000")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let address = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("souk logs");
        seen.push(line.clone());
        let json: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        let msg = json["msg"].as_str().unwrap_or_default();
        if let Some(rest) = msg.strip_prefix("listening on ") {
            break rest.split(' ').next().unwrap().to_owned();
        }
    };

    let url = format!("ws://{address}/socket.io/?EIO=4&transport=websocket");
    let mut client = Client::open_url(&url, None).await;
    let token =
        hs256(serde_json::json!({"sub": "sam", "exp": chrono::Utc::now().timestamp() + 600}));
    assert!(client.connect(Some(&token)).await.starts_with("40{"));

    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let reason = client.expect_close().await.expect("close frame");
    assert_eq!(reason.code, CloseCode::Restart);
    assert_eq!(reason.description.as_deref(), Some("server shutting down"));

    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "souk did not exit within the grace"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit:?}");
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
        seen.push(line);
    }
    for line in &seen {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(
        seen.iter().any(|l| l.contains("SIGTERM received")),
        "{seen:#?}"
    );
}
