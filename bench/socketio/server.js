// The Socket.IO peer of Bellhop's benchmark. It does the same job as the hub's chat path, the way the platforms
// Bellhop replaces did it by hand: a JWT checked in the handshake, `room:join` and `message:send` with acks, each
// message broadcast to the room except its sender with a per-room `seq`, and an internal emit endpoint guarded by an
// API key. It persists nothing: the hub writes every message to its store, this server keeps one counter per room.
//
// Configuration comes from the environment: JWT_SECRET, INTERNAL_API_KEY and PORT (0 picks a free port). Once
// listening it prints `listening <port>` on stdout, which is how the load generator finds it.
"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const jwt = require("jsonwebtoken");
const { Server } = require("socket.io");

const secret = process.env.JWT_SECRET;
const apiKey = process.env.INTERNAL_API_KEY;
if (!secret || !apiKey) {
  console.error("JWT_SECRET and INTERNAL_API_KEY must be set");
  process.exit(2);
}
const MAX_CONTENT = 4000;
const MAX_BODY = 131072;
const ROOM_NAME = /^[A-Za-z0-9\-_.@|+]{1,160}(:[A-Za-z0-9\-_.@|+]{1,160}){0,2}$/;

// The last `seq` given in each room: the hub keeps this in its store, the peer only in memory.
const roomSeq = new Map();

const httpServer = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/internal/emit") {
    internalEmit(req, res);
  } else if (req.method === "GET" && req.url === "/health") {
    reply(res, 200, { status: "healthy", connections: io.engine.clientsCount });
  } else {
    reply(res, 404, { error: { code: "NOT_FOUND", message: "no such route" } });
  }
});

const io = new Server(httpServer, { serveClient: false, transports: ["websocket"] });

// The handshake's `auth.token` is checked before the connection is accepted, as the hub's authorizer does.
io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (typeof token !== "string") {
    return next(new Error("Authentication error: Missing token"));
  }
  try {
    const claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
    if (typeof claims.sub !== "string") {
      return next(new Error("Authentication error: Invalid token"));
    }
    socket.data.user = { id: claims.sub, name: claims.name || null, role: claims.role || null };
    return next();
  } catch (err) {
    const expired = err && err.name === "TokenExpiredError";
    return next(new Error(expired ? "Authentication error: Token expired" : "Authentication error: Invalid token"));
  }
});

io.on("connection", (socket) => {
  socket.join(`user:${socket.data.user.id}`);

  socket.on("room:join", (data, ack) => {
    if (typeof ack !== "function") return;
    const room = data && data.room;
    if (typeof room !== "string" || !ROOM_NAME.test(room)) {
      return ack(failure("INVALID_ROOM", "invalid room name"));
    }
    socket.join(room);
    socket.to(room).emit("room:userJoined", { room, userId: socket.data.user.id, user: socket.data.user });
    const members = io.sockets.adapter.rooms.get(room);
    ack({ ok: true, data: { room, joined: true, participants: members ? members.size : 0, lastSeq: roomSeq.get(room) || 0 } });
  });

  socket.on("message:send", (data, ack) => {
    if (typeof ack !== "function") return;
    const room = data && data.room;
    const content = data && data.content;
    if (typeof room !== "string" || !socket.rooms.has(room)) {
      return ack(failure("FORBIDDEN", "Unauthorized: not a member of this room"));
    }
    if (typeof content !== "string" || content.length === 0 || content.length > MAX_CONTENT) {
      return ack(failure("INVALID_DATA", "content must be 1 to 4000 characters"));
    }
    const seq = (roomSeq.get(room) || 0) + 1;
    roomSeq.set(room, seq);
    const now = new Date().toISOString();
    const message = {
      id: crypto.randomUUID(),
      room,
      sender: socket.data.user,
      content,
      metadata: data.metadata || null,
      seq,
      createdAt: now,
      updatedAt: now,
    };
    socket.to(room).emit("message:new", message);
    ack({ ok: true, data: { message, duplicate: false } });
  });
});

function internalEmit(req, res) {
  if (!timingSafeEqual(req.headers["x-api-key"], apiKey)) {
    req.resume();
    return reply(res, 403, { error: { code: "FORBIDDEN", message: "invalid API key" } });
  }
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  });
  req.on("end", () => {
    if (size > MAX_BODY) {
      return reply(res, 413, { error: { code: "PAYLOAD_TOO_LARGE", message: "body too large" } });
    }
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return reply(res, 400, { error: { code: "INVALID_JSON", message: "body is not JSON" } });
    }
    if (!body || typeof body.event !== "string" || body.event.length === 0) {
      return reply(res, 400, { error: { code: "MISSING_EVENT", message: "event is required" } });
    }
    const rooms = Array.isArray(body.rooms) ? body.rooms : [];
    if (rooms.length === 0 || !rooms.every((room) => typeof room === "string" && ROOM_NAME.test(room))) {
      return reply(res, 400, { error: { code: "MISSING_TARGETS", message: "rooms must name at least one room" } });
    }
    let recipients = 0;
    for (const room of rooms) {
      const members = io.sockets.adapter.rooms.get(room);
      recipients += members ? members.size : 0;
    }
    io.to(rooms).emit(body.event, { room: rooms[0], data: body.data === undefined ? null : body.data });
    reply(res, 200, { recipients, delivered: recipients });
  });
}

function timingSafeEqual(given, expected) {
  if (typeof given !== "string") return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

function failure(code, message) {
  return { ok: false, error: { code, message } };
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

httpServer.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log(`listening ${httpServer.address().port}`);
});

// The load generator stops the server with SIGTERM when a repetition ends.
process.on("SIGTERM", () => process.exit(0));
