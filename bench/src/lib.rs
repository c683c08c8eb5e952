//! Bellhop's side-by-side benchmark: the load generator, the server processes under test and the report. The
//! `bench` binary (`main.rs`) drives them; `bench/README.md` says what each figure means and how to run it.

pub mod cloud;
pub mod durations;
pub mod floor;
pub mod load;
pub mod proto;
pub mod report;
pub mod servers;
