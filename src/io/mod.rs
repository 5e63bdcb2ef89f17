//! Byte-stream wrappers below HTTP: the HTTP/1.1 framing guard, write
//! batching, the send timeout and the lingering close.

pub mod h1_guard;
pub mod linger;
pub mod proxy_header;
pub mod send_watch;
pub mod write_batch;
