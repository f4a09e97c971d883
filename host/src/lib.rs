//! The host side of fbnet: what the command line and the trainer share (datasets and the latency side of
//! the search so far; the super net, search and training come next).

pub mod data;
pub mod latency;
