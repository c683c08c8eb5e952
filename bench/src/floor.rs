//! The floor: the least a server on Bellhop's stack can do for the benchmark's workload, so that a run shows how
//! much of a delivery's cost is the stack and the kernel rather than the product.
//!
//! It runs on what the harness runs on: one current-thread tokio runtime, axum and hyper for the HTTP upgrade,
//! tungstenite for frames, and a flume queue per connection holding shared bytes for the fan-out. It speaks the part
//! of Bellhop's client protocol the load generator uses (`room:join` and `message:send` with acks, `message:new`
//! with a per-room `seq`) and answers `POST /internal/emit`. Everything else a product does is left out on
//! purpose: it checks no token (the connection's number is its user), runs no authorizer and no handler, keeps
//! rooms in one map, persists nothing, enforces no limit but the queue's bound, and has no idle timeout. Its
//! figures are therefore a lower bound for Bellhop on this machine, not a server to deploy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::servers::API_KEY;

/// Fan-out frames that may wait for one slow connection; the harness's outbound queue has the same bound.
const QUEUE: usize = 256;

/// Rooms and their members, shared by every connection task and the emit endpoint.
#[derive(Default)]
struct Floor {
    rooms: HashMap<String, Room>,
    next_connection: u64,
}

#[derive(Default)]
struct Room {
    /// The last `seq` given in the room.
    seq: u64,
    members: Vec<(u64, flume::Sender<Utf8Bytes>)>,
}

type Shared = Arc<Mutex<Floor>>;

fn lock(floor: &Shared) -> MutexGuard<'_, Floor> {
    floor.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves on `127.0.0.1:port` (0 picks a free port) until the process is killed, and prints the address in the
/// harness's words, which is how the load generator finds it.
pub async fn serve(port: u16) -> anyhow::Result<()> {
    let floor = Shared::default();
    let app = Router::new().route("/internal/emit", post(emit)).route("/{stage}", get(upgrade)).with_state(floor);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    // As the harness does: each delivery is one small write that must not wait for the previous one's ACK.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    println!("  WebSocket:       ws://{addr}/local?token=<jwt>");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn upgrade(State(floor): State<Shared>, Path(_stage): Path<String>, upgrade: WebSocketUpgrade) -> Response {
    // The harness's read buffer (512 bytes), and frames written as soon as they are sent.
    upgrade.read_buffer_size(512).write_buffer_size(0).on_upgrade(move |socket| connection(floor, socket))
}

/// A request frame: `{"action","id","data"}`.
#[derive(Deserialize)]
struct Request {
    action: String,
    id: Option<String>,
    #[serde(default)]
    data: Value,
}

/// One connection: reads requests and answers them in order, and writes what the fan-out queued for it.
async fn connection(floor: Shared, mut socket: WebSocket) {
    let (tx, rx) = flume::bounded::<Utf8Bytes>(QUEUE);
    let me = {
        let mut floor = lock(&floor);
        floor.next_connection += 1;
        floor.next_connection
    };
    let mut joined: Vec<String> = Vec::new();
    loop {
        let outgoing = tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(text))) => answer(&floor, me, &tx, &mut joined, text.as_str()),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            queued = rx.recv_async() => match queued {
                Ok(text) => text,
                Err(_) => break,
            },
        };
        if socket.send(Message::Text(outgoing)).await.is_err() {
            break;
        }
    }
    let mut floor = lock(&floor);
    for room in joined {
        if let Some(room) = floor.rooms.get_mut(&room) {
            room.members.retain(|(member, _)| *member != me);
        }
    }
}

/// Handles one request and returns its ack; a `message:send` also queues the message for the room's other members.
fn answer(floor: &Shared, me: u64, tx: &flume::Sender<Utf8Bytes>, joined: &mut Vec<String>, text: &str) -> Utf8Bytes {
    let Ok(request) = serde_json::from_str::<Request>(text) else {
        return failure(None, "INVALID_FRAME", "not a request");
    };
    let id = request.id.as_deref();
    let Some(room_name) = request.data["room"].as_str() else {
        return failure(id, "INVALID_ROOM", "data.room is required");
    };
    let mut floor = lock(floor);
    match request.action.as_str() {
        "room:join" => {
            let room = floor.rooms.entry(room_name.to_owned()).or_default();
            if !joined.iter().any(|name| name == room_name) {
                room.members.push((me, tx.clone()));
                joined.push(room_name.to_owned());
            }
            let data =
                json!({"room": room_name, "joined": true, "participants": room.members.len(), "lastSeq": room.seq});
            ack(id, data)
        }
        "message:send" => {
            let Some(content) = request.data["content"].as_str() else {
                return failure(id, "INVALID_DATA", "data.content is required");
            };
            let Some(room) = floor.rooms.get_mut(room_name).filter(|_| joined.iter().any(|name| name == room_name))
            else {
                return failure(id, "FORBIDDEN", "not a member of this room");
            };
            room.seq += 1;
            let created_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis());
            let message = json!({
                "id": format!("{me}-{}", room.seq),
                "room": room_name,
                "sender": {"id": me.to_string()},
                "content": content,
                "seq": room.seq,
                "createdAt": created_at,
            });
            let event =
                json!({"type": "event", "event": "message:new", "room": room_name, "seq": room.seq, "data": message});
            // Serialised once; every recipient's queue holds the same bytes.
            let event = Utf8Bytes::from(event.to_string());
            for (member, queue) in &room.members {
                if *member != me {
                    // A full queue is a slow client's loss, as the harness's 429: the generator counts it.
                    let _ = queue.try_send(event.clone());
                }
            }
            ack(id, json!({"message": message, "duplicate": false}))
        }
        _ => failure(id, "UNKNOWN_ACTION", "the floor knows room:join and message:send"),
    }
}

fn ack(id: Option<&str>, data: Value) -> Utf8Bytes {
    json!({"type": "ack", "id": id, "ok": true, "data": data}).to_string().into()
}

fn failure(id: Option<&str>, code: &str, message: &str) -> Utf8Bytes {
    json!({"type": "ack", "id": id, "ok": false, "error": {"code": code, "message": message}}).to_string().into()
}

/// `POST /internal/emit` body: an event for every member of the rooms.
#[derive(Deserialize)]
struct EmitBody {
    event: String,
    #[serde(default)]
    data: Value,
    rooms: Vec<String>,
}

async fn emit(State(floor): State<Shared>, headers: HeaderMap, Json(body): Json<EmitBody>) -> Response {
    if headers.get("x-api-key").is_none_or(|key| key.as_bytes() != API_KEY.as_bytes()) {
        let error = json!({"error": {"code": "FORBIDDEN", "message": "invalid API key"}});
        return (StatusCode::FORBIDDEN, Json(error)).into_response();
    }
    let Some(first) = body.rooms.first() else {
        let error = json!({"error": {"code": "MISSING_TARGETS", "message": "rooms must name at least one room"}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    };
    let event = json!({"type": "event", "event": body.event, "room": first, "data": body.data});
    let event = Utf8Bytes::from(event.to_string());
    let floor = lock(&floor);
    let mut recipients = 0;
    for room in body.rooms.iter().filter_map(|name| floor.rooms.get(name)) {
        for (_, queue) in &room.members {
            recipients += 1;
            let _ = queue.try_send(event.clone());
        }
    }
    Json(json!({"recipients": recipients, "delivered": recipients})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(frame: &Utf8Bytes) -> Value {
        serde_json::from_str(frame.as_str()).expect("JSON")
    }

    #[test]
    fn a_message_is_acked_and_queued_for_the_other_members_with_the_next_seq() {
        let floor = Shared::default();
        let (alice_tx, alice_rx) = flume::bounded(QUEUE);
        let (bob_tx, bob_rx) = flume::bounded(QUEUE);
        let (mut alice_rooms, mut bob_rooms) = (Vec::new(), Vec::new());
        let join = r#"{"action":"room:join","id":"j","data":{"room":"topic:a"}}"#;
        assert_eq!(parse(&answer(&floor, 1, &alice_tx, &mut alice_rooms, join))["ok"], true);
        assert_eq!(parse(&answer(&floor, 2, &bob_tx, &mut bob_rooms, join))["data"]["participants"], 2);

        let send = r#"{"action":"message:send","id":"m1","data":{"room":"topic:a","content":"hi"}}"#;
        let ack = parse(&answer(&floor, 1, &alice_tx, &mut alice_rooms, send));
        let second = parse(&answer(&floor, 1, &alice_tx, &mut alice_rooms, send));

        assert_eq!(
            (ack["id"].as_str(), ack["ok"].as_bool(), ack["data"]["message"]["seq"].as_u64()),
            (Some("m1"), Some(true), Some(1))
        );
        assert_eq!(second["data"]["message"]["seq"], 2);
        assert!(alice_rx.try_recv().is_err(), "the sender gets its ack, not its own message");
        let delivered: Vec<Value> = bob_rx.try_iter().map(|frame| parse(&frame)).collect();
        assert_eq!(delivered.len(), 2);
        assert_eq!(delivered[0]["event"], "message:new");
        assert_eq!((delivered[0]["seq"].as_u64(), delivered[1]["seq"].as_u64()), (Some(1), Some(2)));
        assert_eq!(delivered[0]["data"]["content"], "hi");
    }

    #[test]
    fn bad_requests_get_failed_acks() {
        let floor = Shared::default();
        let (tx, _rx) = flume::bounded(QUEUE);
        let mut rooms = Vec::new();
        let code = |frame: &str, rooms: &mut Vec<String>| {
            parse(&answer(&floor, 1, &tx, rooms, frame))["error"]["code"].clone()
        };

        assert_eq!(code("nope", &mut rooms), "INVALID_FRAME");
        assert_eq!(code(r#"{"action":"message:send","id":"m","data":{}}"#, &mut rooms), "INVALID_ROOM");
        let outsider = r#"{"action":"message:send","id":"m","data":{"room":"topic:a","content":"hi"}}"#;
        assert_eq!(code(outsider, &mut rooms), "FORBIDDEN");
        assert_eq!(
            code(r#"{"action":"presence:set","id":"p","data":{"room":"topic:a"}}"#, &mut rooms),
            "UNKNOWN_ACTION"
        );
    }
}
