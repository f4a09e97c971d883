//! The host side of fbnet: what the command line and the trainer share: datasets, the latency side of
//! the search, the super net and its kernels, the search loop, and the reports of a run.

pub mod data;
pub mod decision;
pub mod device;
pub mod export;
pub mod kernels;
pub mod latency;
pub mod layers;
pub mod network;
pub mod optim;
pub mod params;
pub mod relaxation;
pub mod report;
pub mod runs;
pub mod search;
pub mod search_report;
pub mod train;
