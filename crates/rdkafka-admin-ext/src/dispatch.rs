//! Sending a request and getting its answer back, the only place where requests and their
//! result events change hands with librdkafka.
//!
//! Ownership, in order:
//! 1. [`Shared::start`] creates one queue on the client (`rd_kafka_queue_new`); [`Shared`]
//!    owns it and destroys it in its `Drop`, before it releases the client (the queue holds a
//!    reference into the client's `rd_kafka_t`).
//! 2. [`Shared::request`] boxes the answer handler and passes the box to librdkafka as the
//!    request's opaque (`rd_kafka_AdminOptions_set_opaque`). From the moment the admin call
//!    is made, librdkafka owns the box's pointer and hands it back in exactly one result
//!    event on our queue (errors and timeouts are result events too).
//! 3. The dispatcher thread polls the queue (`rd_kafka_queue_poll`), which gives it
//!    ownership of the event; it takes the box back (`Box::from_raw`), runs the handler,
//!    which copies everything it needs out of the event into owned Rust values, and then
//!    destroys the event (`rd_kafka_event_destroy`), which frees every result object.
//! 4. The thread holds the [`Shared`] (so the queue and the client) until the `Admin` is
//!    dropped and no request is in flight: no box is ever left inside librdkafka, no answer
//!    lands on a destroyed queue.
//!
//! The client's main queue is forwarded to ours as well (`rd_kafka_queue_forward`). rust-rdkafka
//! sends a client's log lines and errors there (it sets `log.queue`), and its own `AdminClient`
//! never polls it: without the forward, an admin client's log lines and errors would reach no
//! [`ClientContext`] and pile up in the queue for the client's lifetime. The dispatcher hands
//! them to the client's context (`log`, `error`) as rust-rdkafka's consumers and producers do.
//! The forward is undone in `Drop`, before our queue is destroyed.

use std::ffi::{c_char, c_void, CStr};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_channel::oneshot;
use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka_sys as rd;

use crate::native::code_error;
use crate::{Error, Options};

/// What the dispatcher runs with the answer event; it must copy out what it keeps.
type Handler = Box<dyn FnOnce(*mut rd::rd_kafka_event_t) + Send>;

/// Poll timeout of the dispatcher thread: how soon it sees that it should end.
const POLL_MS: i32 = 100;

pub(crate) struct Shared<C: ClientContext + 'static> {
    client: Arc<AdminClient<C>>,
    /// Owned: created in `start`, destroyed in `drop`.
    queue: *mut rd::rd_kafka_queue_t,
    in_flight: AtomicUsize,
    stopped: AtomicBool,
}

// SAFETY: librdkafka queues are thread-safe (poll, enqueue and destroy lock internally), and
// the pointer is only destroyed once, in `drop`, when no other reference exists.
unsafe impl<C: ClientContext + 'static> Send for Shared<C> {}
// SAFETY: as above; every other field is Sync.
unsafe impl<C: ClientContext + 'static> Sync for Shared<C> {}

impl<C: ClientContext + 'static> Drop for Shared<C> {
    fn drop(&mut self) {
        // The client may outlive us (other owners of the `Arc`): its main queue stops
        // forwarding to the queue destroyed below.
        forward_main(&self.client, std::ptr::null_mut());
        // SAFETY: `queue` came from `rd_kafka_queue_new` and is destroyed only here. The
        // client it belongs to is still alive: `self.client` is released after this body.
        unsafe { rd::rd_kafka_queue_destroy(self.queue) };
    }
}

/// Forwards the client's main queue to `to` (NULL: stops forwarding).
fn forward_main<C: ClientContext + 'static>(
    client: &AdminClient<C>,
    to: *mut rd::rd_kafka_queue_t,
) {
    // SAFETY: `native_ptr` is the client's live `rd_kafka_t`. `rd_kafka_queue_get_main`
    // returns a new reference to its main queue, released once below; `to` is NULL or a
    // live queue of the same client. The forward itself holds its own reference to `to`.
    unsafe {
        let main = rd::rd_kafka_queue_get_main(client.inner().native_ptr());
        if main.is_null() {
            return;
        }
        rd::rd_kafka_queue_forward(main, to);
        rd::rd_kafka_queue_destroy(main);
    }
}

impl<C: ClientContext + 'static> Shared<C> {
    pub(crate) fn start(client: Arc<AdminClient<C>>) -> Result<Arc<Shared<C>>, Error> {
        // SAFETY: `native_ptr` is the client's live `rd_kafka_t`; the new queue is ours
        // (destroyed in `drop`). It never returns NULL for a valid handle.
        let queue = unsafe { rd::rd_kafka_queue_new(client.inner().native_ptr()) };
        if queue.is_null() {
            return Err(Error::InvalidArgument(
                "cannot create a result queue".into(),
            ));
        }
        forward_main(&client, queue);
        let shared = Arc::new(Shared {
            client,
            queue,
            in_flight: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("rdkafka-admin-ext".into())
            .spawn(move || thread.dispatch())
            .map_err(|e| Error::InvalidArgument(format!("cannot start the dispatcher: {e}")))?;
        Ok(shared)
    }

    pub(crate) fn client(&self) -> &Arc<AdminClient<C>> {
        &self.client
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    fn dispatch(self: Arc<Self>) {
        while !(self.stopped.load(Ordering::Acquire) && self.in_flight() == 0) {
            // SAFETY: the queue is alive as long as `self`; a non-NULL event is ours until
            // `rd_kafka_event_destroy` below.
            let ev = unsafe { rd::rd_kafka_queue_poll(self.queue, POLL_MS) };
            if ev.is_null() {
                continue;
            }
            // SAFETY: `ev` is a live event.
            let opaque = unsafe { rd::rd_kafka_event_opaque(ev) };
            if !opaque.is_null() {
                // SAFETY: every request on this queue carries, as its opaque, a pointer made
                // by `Box::into_raw` in `request`, returned in exactly one event: taking the
                // box back here is its only `from_raw`.
                let handler = unsafe { Box::from_raw(opaque.cast::<Handler>()) };
                // A panicking handler loses its answer (the caller sees `Dropped`), never
                // the thread or the event.
                let _ = catch_unwind(AssertUnwindSafe(move || handler(ev)));
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
            } else {
                // A log line or an error from the main queue: the context's, as for any
                // other rust-rdkafka client. A panicking context loses the line only.
                let context = self.client.inner().context();
                // SAFETY: `ev` is live until destroyed below.
                let _ = catch_unwind(AssertUnwindSafe(|| unsafe { to_context(&**context, ev) }));
            }
            // SAFETY: the handler copied what it keeps; the event and every result object
            // it owns are freed here, once.
            unsafe { rd::rd_kafka_event_destroy(ev) };
        }
    }

    /// Sends one request. `call` makes the admin call with the client, the options (the
    /// handler set as their opaque) and the queue; `read` copies the answer out of an event
    /// of type `expect` (it runs on the dispatcher thread while the event is alive).
    pub(crate) fn request<T: Send + 'static>(
        &self,
        op: rd::rd_kafka_admin_op_t,
        opts: &Options,
        expect: rd::rd_kafka_event_type_t,
        read: unsafe fn(*mut rd::rd_kafka_event_t) -> Result<T, Error>,
        call: impl FnOnce(
            *mut rd::rd_kafka_t,
            *mut rd::rd_kafka_AdminOptions_t,
            *mut rd::rd_kafka_queue_t,
        ),
    ) -> Reply<T> {
        let (tx, rx) = oneshot::channel();
        let rk = self.client.inner().native_ptr();
        // SAFETY: `rk` is alive (we hold the client); the options are ours until destroyed
        // below (librdkafka copies them into the request).
        let options = unsafe { rd::rd_kafka_AdminOptions_new(rk, op) };
        if options.is_null() {
            return Reply::failed(Error::InvalidArgument(format!("admin options for {op:?}")));
        }
        let destroy = |o| {
            // SAFETY: created above, destroyed once.
            unsafe { rd::rd_kafka_AdminOptions_destroy(o) }
        };
        if let Err(e) = set_options(options, op, opts) {
            destroy(options);
            return Reply::failed(e);
        }
        let handler: Handler = Box::new(move |ev| {
            // SAFETY: the dispatcher passes the live event that answers this request.
            let answer = unsafe { answer(ev, expect, read) };
            let _ = tx.send(answer);
        });
        let opaque = Box::into_raw(Box::new(handler));
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        // SAFETY: `options` is live; from here librdkafka owns `opaque` (see the module docs).
        unsafe { rd::rd_kafka_AdminOptions_set_opaque(options, opaque.cast::<c_void>()) };
        call(rk, options, self.queue);
        destroy(options);
        Reply {
            rx: Some(rx),
            ready: None,
        }
    }
}

/// Hands a main-queue event to the client's context: a log line to `log`, an error to
/// `error` (as rust-rdkafka does for its other clients); any other event is only freed.
///
/// # Safety
/// `ev` must be a live event.
unsafe fn to_context<C: ClientContext>(context: &C, ev: *mut rd::rd_kafka_event_t) {
    // SAFETY: `ev` is live (the caller's contract); strings are copied at once.
    unsafe {
        match rd::rd_kafka_event_type(ev) {
            rd::RD_KAFKA_EVENT_LOG => {
                let mut fac: *const c_char = std::ptr::null();
                let mut text: *const c_char = std::ptr::null();
                let mut level: i32 = 0;
                if rd::rd_kafka_event_log(ev, &mut fac, &mut text, &mut level) == 0 {
                    let fac = crate::native::string(fac);
                    let text = crate::native::string(text);
                    context.log(log_level(level), fac.trim(), text.trim());
                }
            }
            rd::RD_KAFKA_EVENT_ERROR => {
                let error = KafkaError::Global(rd::rd_kafka_event_error(ev).into());
                let reason = crate::native::string(rd::rd_kafka_event_error_string(ev));
                context.error(error, reason.trim());
            }
            _ => {}
        }
    }
}

/// librdkafka's syslog level as rust-rdkafka's enum.
fn log_level(level: i32) -> RDKafkaLogLevel {
    match level {
        0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

fn set_options(
    options: *mut rd::rd_kafka_AdminOptions_t,
    op: rd::rd_kafka_admin_op_t,
    opts: &Options,
) -> Result<(), Error> {
    let ms = i32::try_from(opts.request_timeout.as_millis()).unwrap_or(i32::MAX);
    let mut errstr = [0 as c_char; 256];
    // SAFETY: `options` is live; `errstr` is a writable buffer of the given size.
    let err = unsafe {
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        // SAFETY: librdkafka wrote a NUL-terminated message into the buffer.
        let msg = unsafe { CStr::from_ptr(errstr.as_ptr()) };
        return Err(Error::InvalidArgument(msg.to_string_lossy().into_owned()));
    }
    if opts.read_committed && op == rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTOFFSETS {
        // SAFETY: `options` is live; a returned error object is ours to destroy.
        let e = unsafe {
            rd::rd_kafka_AdminOptions_set_isolation_level(
                options,
                rd::rd_kafka_IsolationLevel_t::RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED,
            )
        };
        if !e.is_null() {
            // SAFETY: `e` is a live error object; read, then destroyed once.
            let msg = unsafe { code_error(e) }.message;
            unsafe { rd::rd_kafka_error_destroy(e) };
            return Err(Error::InvalidArgument(msg));
        }
    }
    Ok(())
}

/// The request's result, or the error of the request as a whole.
///
/// # Safety
/// `ev` must be a live event.
unsafe fn answer<T>(
    ev: *mut rd::rd_kafka_event_t,
    expect: rd::rd_kafka_event_type_t,
    read: unsafe fn(*mut rd::rd_kafka_event_t) -> Result<T, Error>,
) -> Result<T, Error> {
    // SAFETY: `ev` is live (the caller's contract); strings are copied at once.
    unsafe {
        let err = rd::rd_kafka_event_error(ev);
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let message = crate::native::string(rd::rd_kafka_event_error_string(ev));
            return Err(Error::Kafka(crate::KafkaCodeError {
                code: err.into(),
                message,
            }));
        }
        let ty = rd::rd_kafka_event_type(ev);
        if ty != expect {
            let name = crate::native::string(rd::rd_kafka_event_name(ev));
            return Err(Error::UnexpectedEvent(name));
        }
        read(ev)
    }
}

/// The answer of one call. Sent when the call is made: awaiting it only waits.
#[must_use = "the answer is dropped unread"]
pub struct Reply<T> {
    rx: Option<oneshot::Receiver<Result<T, Error>>>,
    ready: Option<Result<T, Error>>,
}

impl<T> Reply<T> {
    /// An answer known without asking.
    pub(crate) fn ready(r: Result<T, Error>) -> Reply<T> {
        Reply {
            rx: None,
            ready: Some(r),
        }
    }

    pub(crate) fn failed(e: Error) -> Reply<T> {
        Reply::ready(Err(e))
    }
}

// The answer is moved out, never pinned.
impl<T> Unpin for Reply<T> {}

impl<T> Future for Reply<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.ready.take() {
            return Poll::Ready(r);
        }
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(Err(Error::Dropped));
        };
        match Pin::new(rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.rx = None;
                Poll::Ready(r.unwrap_or(Err(Error::Dropped)))
            }
        }
    }
}
