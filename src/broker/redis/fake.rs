//! Fake Redis servers for tests of what souk sends.

use std::sync::{Arc, Mutex};

use deadpool_redis::redis::Script;

use super::{resp, Redis, RedisBroker};

/// A listener on a free local port for a fake Redis, and its URL.
pub(super) async fn fake_redis_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|err| panic!("bind: {err}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|err| panic!("address: {err}"));
    (listener, format!("redis://{address}"))
}

/// A Redis that knows no script until `SCRIPT LOAD` (which answers `sha`):
/// `EVALSHA` answers NOSCRIPT before and `answer` (RESP) after, `EVAL` an
/// error. Notes each script command it was sent in `seen`: its name and,
/// for a script call, its key count.
async fn fake_redis_without_scripts(
    seen: Arc<Mutex<Vec<String>>>,
    sha: String,
    answer: &'static str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (listener, url) = fake_redis_listener().await;
    let loaded = Arc::new(Mutex::new(false));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (seen, loaded, sha) = (seen.clone(), loaded.clone(), sha.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(Some((command, used))) = resp::decode(&buf) else {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    buf.drain(..used);
                    let resp::Value::Array(Some(words)) = command else {
                        return;
                    };
                    let word = |i: usize| {
                        words
                            .get(i)
                            .and_then(resp::Value::text)
                            .unwrap_or("")
                            .to_uppercase()
                    };
                    let reply = match word(0).as_str() {
                        "INFO" => "$17\r\ncluster_enabled:0\r\n".to_owned(),
                        "PING" => "+PONG\r\n".to_owned(),
                        name @ ("EVAL" | "EVALSHA") => {
                            let known = *loaded.lock().unwrap_or_else(|e| e.into_inner());
                            push_seen(&seen, format!("{name} {}", word(2)));
                            match (name, known) {
                                ("EVALSHA", true) => answer.to_owned(),
                                ("EVALSHA", false) => {
                                    "-NOSCRIPT No matching script.\r\n".to_owned()
                                }
                                _ => "-ERR scripts go by their SHA\r\n".to_owned(),
                            }
                        }
                        "SCRIPT" => {
                            push_seen(&seen, format!("SCRIPT {}", word(1)));
                            *loaded.lock().unwrap_or_else(|e| e.into_inner()) = true;
                            format!("${}\r\n{sha}\r\n", sha.len())
                        }
                        _ => "+OK\r\n".to_owned(),
                    };
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn push_seen(seen: &Mutex<Vec<String>>, what: String) {
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(what);
}

/// A broker on the Redis at `url`, with the default prefix.
pub(super) fn broker_at(url: &str) -> RedisBroker {
    let metrics = crate::metrics::Metrics::new().unwrap_or_else(|_| panic!("metrics"));
    let redis = Redis::new(url, "souk:", 1, metrics).unwrap_or_else(|_| panic!("a handle"));
    RedisBroker::new(redis, url, "test").unwrap_or_else(|_| panic!("a broker"))
}

/// A broker on [`fake_redis_without_scripts`], which knows only `script`,
/// once loaded, and answers it `answer`; and what it was sent so far.
pub(super) async fn broker_without_scripts(
    script: &Script,
    answer: &'static str,
) -> (RedisBroker, impl Fn() -> Vec<String>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = fake_redis_without_scripts(seen.clone(), script.get_hash().to_owned(), answer).await;
    let sent = move || seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (broker_at(&url), sent)
}
