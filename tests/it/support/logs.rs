//! The proxy's log lines of one test, though every test shares the process.
//!
//! Nothing installs a global subscriber. [`LogCapture::run`] runs the test
//! on a runtime of its own, every thread of which (and the calling thread)
//! logs into this capture; the other tests' proxies log nowhere. The proxy
//! must run on that runtime alone: `[limits] workers = 1` (a further worker
//! is a runtime of the server's own, whose threads would log nowhere).

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tracing::dispatcher::{self, DefaultGuard, Dispatch};

#[derive(Clone)]
pub struct LogCapture {
    lines: Arc<Mutex<Vec<u8>>>,
    dispatch: Dispatch,
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    static GUARD: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

impl LogCapture {
    /// Lines at `info` and above, as the binary writes them (without colours).
    pub fn new() -> LogCapture {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Writer(sink.clone()))
            .with_ansi(false)
            .with_env_filter("info")
            .finish();
        LogCapture { lines, dispatch: Dispatch::new(subscriber) }
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Runs `test` to the end on a runtime of two threads (as
    /// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` would)
    /// whose every thread logs here.
    pub fn run<F: Future>(&self, test: F) -> F::Output {
        let start = self.dispatch.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                let guard = dispatcher::set_default(&start);
                GUARD.with(|g| *g.borrow_mut() = Some(guard));
            })
            .on_thread_stop(|| GUARD.with(|g| drop(g.borrow_mut().take())))
            .build()
            .unwrap();
        let _here = dispatcher::set_default(&self.dispatch);
        runtime.block_on(test)
    }
}
