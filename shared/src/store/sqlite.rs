//! SQLite adapter: placeholder until it lands.
