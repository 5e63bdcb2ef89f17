//! Byte-stream wrappers below HTTP: the HTTP/1.1 framing guard, write
//! batching, and the send timeout.

pub mod h1_guard;
pub mod proxy_header;
pub mod send_watch;
pub mod write_batch;
