//! connect: being written.
