//! The `local` binary as the README starts it. It builds its async runtime from `--worker-threads` before anything
//! else, so these tests start the real binary on each kind of runtime and check that it serves a WebSocket client
//! end to end: a token from its own `token` command, a connect through the authorizer and `$connect`, and an ack.

use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);

fn harness() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_local"));
    command.env("RUST_LOG", "warn").kill_on_drop(true);
    command
}

async fn serves_a_client(extra_args: &[&str]) {
    let token = timeout(WAIT, harness().args(["token", "--sub", "binary-test"]).output())
        .await
        .expect("token command within the timeout")
        .expect("run the token command");
    assert!(token.status.success(), "token command failed: {}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).expect("token is UTF-8").trim().to_owned();

    let mut child = harness()
        .args(["--port", "0", "--store", "memory"])
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the harness");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let ws_url = timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read the harness's stdout") {
            if let Some(url) = line.trim().strip_prefix("WebSocket:") {
                return url.trim().trim_end_matches("?token=<jwt>").to_owned();
            }
        }
        panic!("the harness exited without printing its WebSocket URL");
    })
    .await
    .expect("the harness prints its URL within the timeout");

    let (mut socket, _) = timeout(WAIT, tokio_tungstenite::connect_async(format!("{ws_url}?token={token}")))
        .await
        .expect("connect within the timeout")
        .expect("connect");
    let request = json!({"action": "hello", "id": "h1", "data": {}});
    socket.send(Message::text(request.to_string())).await.expect("send hello");
    let ack = timeout(WAIT, async {
        while let Some(frame) = socket.next().await {
            if let Message::Text(text) = frame.expect("read a frame") {
                let frame: Value = serde_json::from_str(&text).expect("frames are JSON");
                if frame["type"] == "ack" && frame["id"] == "h1" {
                    return frame;
                }
            }
        }
        panic!("the socket closed before the ack");
    })
    .await
    .expect("the ack arrives within the timeout");
    assert_eq!(ack["ok"], true, "{ack}");
    child.kill().await.expect("stop the harness");
}

#[tokio::test]
async fn serves_a_client_on_its_default_single_event_loop() {
    serves_a_client(&[]).await;
}

#[tokio::test]
async fn serves_a_client_on_a_pool_of_worker_threads() {
    serves_a_client(&["--worker-threads", "3"]).await;
}

#[tokio::test]
async fn refuses_zero_worker_threads() {
    let output = timeout(WAIT, harness().args(["--port", "0", "--worker-threads", "0"]).output())
        .await
        .expect("exit within the timeout")
        .expect("run the harness");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--worker-threads"), "{output:?}");
}
