//! message: being written.
