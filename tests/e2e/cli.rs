//! The CLI smoke client (the `cli` package) driven in-process against a real hub: one-shot commands with their exit
//! status, the interactive prompt, `emit` through the HTTP API, and the errors a user sees.

use cli::{Args, Command, Endpoint, Outcome, Session, parse_command};
use serde_json::{Value, json};
use shared::config::Config;

use crate::helpers::{RECV_TIMEOUT, TestHub, spawn_hub};

/// Every line the CLI printed on stdout, each of which must be JSON.
fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect()
}

fn acks(out: &[u8]) -> Vec<Value> {
    json_lines(out).into_iter().filter(|frame| frame["type"] == "ack").collect()
}

/// What `bellhop-cli` would connect with for `user`, the hub's own secrets standing in for the environment's.
fn endpoint(hub: &TestHub, user: &str) -> Endpoint {
    Endpoint {
        ws_url: hub.ws_url.clone(),
        http_url: hub.http_url.clone(),
        token: hub.token(user, "customer").into(),
        api_key: hub.api_key().to_owned().into(),
        timeout: RECV_TIMEOUT,
    }
}

async fn session(hub: &TestHub, user: &str) -> Session<Vec<u8>> {
    Session::connect(&endpoint(hub, user), Vec::new()).await.expect("the CLI connects")
}

fn command(line: &str) -> Command {
    parse_command(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Runs the whole program as `bellhop-cli --url <hub> ARGS...` with the harness's development defaults, which the
/// test hubs share, and answers the exit status, stdout and stderr.
async fn run_cli(hub: &TestHub, args: &[&str]) -> (u8, Vec<u8>, String) {
    let argv = ["bellhop-cli", "--url", hub.ws_url.as_str()].into_iter().chain(args.iter().copied());
    let args = Args::try_from_argv(argv).expect("valid arguments");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::run(&args, &Config::for_tests(), &b""[..], &mut out, &mut err, false).await;
    (code, out, String::from_utf8_lossy(&err).into_owned())
}

#[tokio::test]
async fn a_one_shot_ping_prints_the_gateways_pong_as_a_json_line_and_exits_0() {
    let hub = spawn_hub().await;

    let (code, out, err) = run_cli(&hub, &["--user", "u1", "--role", "customer", "--wait", "50", "-c", "ping"]).await;

    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(json_lines(&out), [json!({"type": "pong"})], "the pong, and no ack");
}

#[tokio::test]
async fn join_and_send_reach_another_member_of_the_room() {
    let hub = spawn_hub().await;
    let mut other = hub.connect(&hub.token("u2", "customer")).await.expect("connect");
    other.request("room:join", json!({"room": "topic:lobby"})).await;
    let mut cli = session(&hub, "u1").await;

    let joined = cli.run(&command("join topic:lobby")).await.expect("join");
    let sent = cli.run(&command("send topic:lobby hello  there")).await.expect("send");

    assert_eq!((joined, sent), (Outcome::Ok, Outcome::Ok));
    let message = other.next_event("message:new").await;
    assert_eq!(message["data"]["content"], "hello  there", "{message}");
    assert_eq!(message["room"], "topic:lobby");
    let acks = acks(cli.output());
    assert_eq!(acks[0]["data"]["room"], "topic:lobby", "{acks:?}");
    assert_eq!(acks[1]["data"]["message"]["content"], "hello  there", "{acks:?}");
}

#[tokio::test]
async fn a_one_shot_join_given_as_trailing_arguments_succeeds() {
    let hub = spawn_hub().await;
    hub.grant("vendor:v9", &["u1"]).await;

    let (code, out, err) = run_cli(&hub, &["--user", "u1", "--wait", "50", "join", "vendor", "v9"]).await;

    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(acks(&out)[0]["data"]["room"], "vendor:v9");
}

#[tokio::test]
async fn emit_goes_through_the_http_api_and_reaches_a_socket() {
    let hub = spawn_hub().await;
    let mut vendor = hub.connect(&hub.token("vendor-1", "provider")).await.expect("connect");
    let mut cli = session(&hub, "ops").await;

    let outcome =
        cli.run(&command(r#"emit booking:status_changed user:vendor-1 {"bookingId": "b1", "status": "paid"}"#)).await;

    assert_eq!(outcome.expect("emit"), Outcome::Ok);
    let event = vendor.next_event("booking:status_changed").await;
    assert_eq!(event["data"], json!({"bookingId": "b1", "status": "paid"}), "{event}");
    let answer = json_lines(cli.output()).pop().expect("the HTTP answer is printed");
    assert_eq!((answer["type"].clone(), answer["status"].clone()), (json!("http"), json!(200)), "{answer}");
    assert_eq!(answer["body"]["delivered"], 1, "{answer}");
}

#[tokio::test]
async fn a_one_shot_emit_to_oneself_prints_the_event_arriving_within_the_wait() {
    let hub = spawn_hub().await;

    let (code, out, err) =
        run_cli(&hub, &["--user", "u1", "--wait", "2000", "-c", r#"emit payment:failed user:u1 {"amount": 12}"#]).await;

    assert_eq!(code, 0, "stderr: {err}");
    let frames = json_lines(&out);
    assert_eq!(frames[0]["type"], "http", "{frames:?}");
    let event = frames.iter().find(|f| f["event"] == "payment:failed").expect("the event was printed");
    assert_eq!(event["data"]["amount"], 12);
}

#[tokio::test]
async fn an_emit_with_a_wrong_api_key_fails_with_the_hubs_code() {
    let hub = spawn_hub().await;
    let mut endpoint = endpoint(&hub, "ops");
    endpoint.api_key = "wrong".to_owned().into();
    let mut cli = Session::connect(&endpoint, Vec::new()).await.expect("connect");

    let outcome = cli.run(&command("emit e topic:x")).await.expect("an answer");

    assert!(matches!(&outcome, Outcome::Failed { code, .. } if code == "FORBIDDEN"), "{outcome:?}");
    assert_eq!(outcome.exit_code(), cli::EXIT_FAILED);
}

#[tokio::test]
async fn leave_takes_the_session_out_of_the_room() {
    let hub = spawn_hub().await;
    let mut cli = session(&hub, "u1").await;
    cli.run(&command("join topic:news")).await.expect("join");

    let left = cli.run(&command("leave topic:news")).await.expect("leave");

    assert_eq!(left, Outcome::Ok);
    assert_eq!(acks(cli.output())[1]["data"]["left"], true, "{:?}", acks(cli.output()));
    let (_, report) = hub.emit(json!({"event": "news", "rooms": ["topic:news"]})).await;
    assert_eq!(report["recipients"], 0, "{report}");
}

#[tokio::test]
async fn an_unknown_command_is_a_clear_error_before_connecting() {
    let hub = spawn_hub().await;

    let (code, out, err) = run_cli(&hub, &["--user", "u1", "-c", "jump booking:1"]).await;
    let (missing_code, _, missing_err) = run_cli(&hub, &["--user", "u1", "-c", "send booking:1"]).await;

    assert_eq!(code, cli::EXIT_USAGE);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(err.contains("unknown command `jump`"), "{err}");
    assert_eq!(missing_code, cli::EXIT_USAGE);
    assert!(missing_err.contains("`send` needs a message text"), "{missing_err}");
    assert!(hub.connection_ids().is_empty(), "nothing connected");
}

#[tokio::test]
async fn a_bad_room_shows_the_hubs_error_code_and_fails() {
    let hub = spawn_hub().await;

    let (code, out, err) = run_cli(&hub, &["--user", "u1", "-c", "join bad/room"]).await;

    assert_eq!(code, cli::EXIT_FAILED, "stderr: {err}");
    let ack = &acks(&out)[0];
    assert_eq!((ack["ok"].clone(), ack["error"]["code"].clone()), (json!(false), json!("INVALID_ROOM")), "{ack}");
    assert!(err.contains("INVALID_ROOM"), "{err}");
    let mut cli = session(&hub, "u1").await;
    let refused = cli.run(&Command::Join { room: "booking:404".to_owned() }).await.expect("an answer");
    assert!(matches!(&refused, Outcome::Failed { code, .. } if code == "NOT_FOUND"), "{refused:?}");
}

#[tokio::test]
async fn a_refused_handshake_is_a_connection_failure_with_a_clear_message() {
    let hub = spawn_hub().await;

    let (code, out, err) = run_cli(&hub, &["--token", "not.a.jwt", "-c", "ping"]).await;

    assert_eq!(code, cli::EXIT_CONNECTION);
    assert!(out.is_empty());
    assert!(err.contains("refused the handshake with HTTP 403"), "{err}");
    assert!(!err.contains("not.a.jwt"), "the token is never printed: {err}");
}

#[tokio::test]
async fn the_prompt_runs_each_line_reports_bad_ones_and_stops_at_exit() {
    let hub = spawn_hub().await;
    let mut cli = session(&hub, "u1").await;
    let input = "ping\n\njoin topic:a\nbogus\nsend topic:a hi\nexit\nping\n";
    let mut err = Vec::new();

    tokio::time::timeout(RECV_TIMEOUT, cli.interactive(input.as_bytes(), &mut err, true))
        .await
        .expect("the prompt finishes")
        .expect("no connection failure");

    let err = String::from_utf8_lossy(&err);
    assert!(err.contains("error: unknown command `bogus`"), "{err}");
    assert!(err.starts_with("> "), "a prompt before the first command: {err}");
    let acks = acks(cli.output());
    assert_eq!(acks.len(), 2, "join and send: {acks:?}");
    assert!(acks.iter().all(|ack| ack["ok"] == true), "{acks:?}");
    let pongs = json_lines(cli.output()).into_iter().filter(|frame| frame["type"] == "pong").count();
    assert_eq!(pongs, 1, "the ping after exit never ran");
}
