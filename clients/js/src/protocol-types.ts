/**
 * PROVISIONAL: the protocol maps the client is typed with by default. They become the types generated from the Rust
 * protocol (`src/generated/`) as soon as those exist; until then every action and event is loosely typed here rather
 * than written out by hand a second time.
 */
export type ActionMap = Record<string, { request: any; ack: any }>;
export type EventMap = Record<string, any>;
