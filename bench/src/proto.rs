//! The two wire protocols the load generator speaks over plain WebSocket: Bellhop's JSON frames and Socket.IO 4
//! (Engine.IO v4 packets carrying Socket.IO packets). This module only builds outgoing frames and classifies
//! incoming ones; it holds no connection state and does no I/O.
//!
//! Speaking Socket.IO by hand rather than through a client library keeps the generator's per-message cost the same
//! for both servers: one JSON encode per send and one JSON parse per receive.

use serde_json::{Value, json};

/// Which server a connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Bellhop's client protocol v1: `{"action","id","data"}` requests, `ack` and `event` frames.
    Bellhop,
    /// Socket.IO 4 over the WebSocket transport only (`EIO=4`).
    SocketIo,
}

/// The event name the internal-emit workload sends, on both servers.
pub const EMIT_EVENT: &str = "bench:emit";

/// What an incoming text frame means to the benchmark.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// The answer to one of our requests.
    Ack { ok: bool },
    /// A chat message broadcast to the room: its room, per-room `seq`, and the send time carried in `content`.
    Message { room: String, seq: u64, sent_us: u64 },
    /// An internal emit, numbered by the workload.
    Emit { n: u64 },
    /// An Engine.IO ping, which must be answered with a pong.
    Ping,
    /// Anything else (presence and join notices, the Socket.IO connect packet): not measured.
    Other,
    /// A frame that claims to be one of the above but cannot be read: counted as a protocol error.
    Malformed(String),
}

impl Protocol {
    /// The WebSocket URL to connect to, given the server's base `ws://host:port` address and a token. Bellhop takes
    /// the token in the query string; Socket.IO takes it in its connect packet (see [`Protocol::connect_packet`]).
    pub fn url(self, base: &str, token: &str) -> String {
        match self {
            Protocol::Bellhop => format!("{base}?token={token}"),
            Protocol::SocketIo => format!("{base}/socket.io/?EIO=4&transport=websocket"),
        }
    }

    /// The Socket.IO connect packet carrying the JWT as `auth.token`; Bellhop needs none.
    pub fn connect_packet(self, token: &str) -> Option<String> {
        match self {
            Protocol::Bellhop => None,
            Protocol::SocketIo => Some(format!("40{}", json!({ "token": token }))),
        }
    }

    /// A `room:join` request with an ack.
    pub fn join(self, room: &str) -> String {
        match self {
            Protocol::Bellhop => json!({"action": "room:join", "id": "join", "data": {"room": room}}).to_string(),
            Protocol::SocketIo => format!("420{}", json!(["room:join", {"room": room}])),
        }
    }

    /// A `message:send` request with an ack, whose content is the send time in µs since the generator's epoch.
    pub fn send(self, id: u64, room: &str, sent_us: u64) -> String {
        let content = sent_us.to_string();
        match self {
            Protocol::Bellhop => json!({
                "action": "message:send",
                "id": format!("m{id}"),
                "data": {"room": room, "content": content},
            })
            .to_string(),
            Protocol::SocketIo => format!("42{id}{}", json!(["message:send", {"room": room, "content": content}])),
        }
    }

    /// The Engine.IO pong answering a ping; Bellhop's keep-alive is the client's business, so it has none.
    pub fn pong(self) -> Option<&'static str> {
        match self {
            Protocol::Bellhop => None,
            Protocol::SocketIo => Some("3"),
        }
    }

    /// Classifies one incoming text frame.
    pub fn parse(self, text: &str) -> Incoming {
        match self {
            Protocol::Bellhop => parse_bellhop(text),
            Protocol::SocketIo => parse_socketio(text),
        }
    }
}

fn parse_bellhop(text: &str) -> Incoming {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return Incoming::Malformed(format!("not JSON: {}", clip(text)));
    };
    match frame["type"].as_str() {
        Some("ack") => Incoming::Ack { ok: frame["ok"].as_bool() == Some(true) },
        Some("event") => match frame["event"].as_str() {
            Some("message:new") => message(frame["room"].as_str(), frame["seq"].as_u64(), &frame["data"], text),
            Some(EMIT_EVENT) => emit(&frame["data"]["n"], text),
            _ => Incoming::Other,
        },
        _ => Incoming::Other,
    }
}

fn parse_socketio(text: &str) -> Incoming {
    // Engine.IO packet type first: 2 is a ping, 4 a message carrying a Socket.IO packet.
    if text == "2" {
        return Incoming::Ping;
    }
    let Some(packet) = text.strip_prefix('4') else {
        return Incoming::Other;
    };
    // Socket.IO packet type: 2 is an event, 3 an ack; the ack id's digits come before the JSON array.
    let (kind, rest) = packet.split_at(packet.len().min(1));
    let payload = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    match kind {
        "2" => {
            let Ok(Value::Array(items)) = serde_json::from_str::<Value>(payload) else {
                return Incoming::Malformed(format!("bad event packet: {}", clip(text)));
            };
            match items.first().and_then(Value::as_str) {
                Some("message:new") => {
                    let data = items.get(1).unwrap_or(&Value::Null);
                    message(data["room"].as_str(), data["seq"].as_u64(), data, text)
                }
                Some(EMIT_EVENT) => emit(&items.get(1).unwrap_or(&Value::Null)["data"]["n"], text),
                _ => Incoming::Other,
            }
        }
        "3" => {
            let Ok(Value::Array(items)) = serde_json::from_str::<Value>(payload) else {
                return Incoming::Malformed(format!("bad ack packet: {}", clip(text)));
            };
            Incoming::Ack { ok: items.first().is_some_and(|answer| answer["ok"].as_bool() == Some(true)) }
        }
        _ => Incoming::Other,
    }
}

fn message(room: Option<&str>, seq: Option<u64>, data: &Value, text: &str) -> Incoming {
    let sent_us = data["content"].as_str().and_then(|content| content.parse::<u64>().ok());
    match (room, seq, sent_us) {
        (Some(room), Some(seq), Some(sent_us)) => Incoming::Message { room: room.to_owned(), seq, sent_us },
        _ => Incoming::Malformed(format!("message without room, seq or timestamp: {}", clip(text))),
    }
}

fn emit(n: &Value, text: &str) -> Incoming {
    match n.as_u64() {
        Some(n) => Incoming::Emit { n },
        None => Incoming::Malformed(format!("emit without n: {}", clip(text))),
    }
}

fn clip(text: &str) -> &str {
    let end = text.char_indices().nth(120).map_or(text.len(), |(index, _)| index);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(protocol: Protocol, frame: &str, expected: Incoming) {
        assert_eq!(protocol.parse(frame), expected, "frame {frame}");
    }

    #[test]
    fn bellhop_frames_are_classified() {
        let bellhop = Protocol::Bellhop;
        check(bellhop, r#"{"type":"ack","id":"m1","ok":true,"data":{}}"#, Incoming::Ack { ok: true });
        check(bellhop, r#"{"type":"ack","id":"m1","ok":false,"error":{}}"#, Incoming::Ack { ok: false });
        check(
            bellhop,
            r#"{"type":"event","event":"message:new","room":"topic:a","seq":7,"data":{"content":"1234"}}"#,
            Incoming::Message { room: "topic:a".into(), seq: 7, sent_us: 1234 },
        );
        check(
            bellhop,
            r#"{"type":"event","event":"bench:emit","room":"topic:a","data":{"n":3}}"#,
            Incoming::Emit { n: 3 },
        );
        check(bellhop, r#"{"type":"event","event":"room:userJoined","data":{}}"#, Incoming::Other);
        assert!(matches!(bellhop.parse("nope"), Incoming::Malformed(_)));
        assert!(matches!(
            bellhop.parse(r#"{"type":"event","event":"message:new","room":"r","seq":1,"data":{"content":"x"}}"#),
            Incoming::Malformed(_)
        ));
    }

    #[test]
    fn socketio_packets_are_classified() {
        let sio = Protocol::SocketIo;
        check(sio, "2", Incoming::Ping);
        check(sio, r#"0{"sid":"x","pingInterval":25000}"#, Incoming::Other);
        check(sio, r#"40{"sid":"y"}"#, Incoming::Other);
        check(sio, r#"4312[{"ok":true,"data":{}}]"#, Incoming::Ack { ok: true });
        check(sio, r#"430[{"ok":false}]"#, Incoming::Ack { ok: false });
        check(
            sio,
            r#"42["message:new",{"room":"topic:a","seq":9,"content":"55"}]"#,
            Incoming::Message { room: "topic:a".into(), seq: 9, sent_us: 55 },
        );
        check(sio, r#"42["bench:emit",{"room":"topic:a","data":{"n":4}}]"#, Incoming::Emit { n: 4 });
        assert!(matches!(sio.parse("42[oops"), Incoming::Malformed(_)));
    }

    #[test]
    fn outgoing_frames_have_each_protocols_shape() {
        let socketio = Protocol::SocketIo.send(5, "topic:a", 99);
        let payload: Value = serde_json::from_str(socketio.strip_prefix("425").expect("event packet with ack id 5"))
            .expect("a JSON array");
        assert_eq!(payload, json!(["message:send", {"room": "topic:a", "content": "99"}]));
        assert_eq!(Protocol::SocketIo.join("topic:a"), r#"420["room:join",{"room":"topic:a"}]"#);
        let bellhop: Value = serde_json::from_str(&Protocol::Bellhop.send(5, "topic:a", 99)).unwrap();
        assert_eq!(bellhop["action"], "message:send");
        assert_eq!(bellhop["id"], "m5");
        assert_eq!(bellhop["data"]["content"], "99");
        assert_eq!(Protocol::SocketIo.url("ws://h:1", "t"), "ws://h:1/socket.io/?EIO=4&transport=websocket");
        assert_eq!(Protocol::Bellhop.url("ws://h:1/local", "t"), "ws://h:1/local?token=t");
    }
}
