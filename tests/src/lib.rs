//! Test bed for camera-agent: a contract-exact stand-in control plane, a
//! WebRTC viewer that decodes what the agent sends, and helpers to run the
//! real agent binary and measure it.

pub mod backpressure;
pub mod browser_viewer;
pub mod chromium;
pub mod fleet;
pub mod harness;
pub mod legacy_viewer;
pub mod link_quality;
pub mod measure;
pub mod netem;
pub mod pattern;
pub mod raw_device;
pub mod standin;
pub mod turn;
pub mod viewer;
pub mod viewer_page;
pub mod viewer_stats;
