//! presence: being written.
