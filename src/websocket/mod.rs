//! WebSocket hubs: which requests may open a tunnel (`handshake`), and the
//! splice that copies bytes both ways once the upstream has answered 101.

pub mod frames;
pub mod handshake;
pub mod splice;

pub use handshake::{accept_for, is_hub_path, new_key, wants_websocket};
pub use splice::splice;
