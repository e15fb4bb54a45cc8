//! Safe async bindings of the librdkafka 2.12 admin calls that rust-rdkafka 0.39 does not wrap:
//!
//! | call | what it answers |
//! |---|---|
//! | [`Admin::list_consumer_groups`] | every consumer group of the cluster, with its state |
//! | [`Admin::describe_consumer_groups`] | members (and their assignments), state, coordinator; many groups per call |
//! | [`Admin::list_consumer_group_offsets`] | a group's committed offsets (one group per call, as librdkafka requires) |
//! | [`Admin::list_offsets`] | earliest, latest, max-timestamp or by-timestamp offsets of many partitions in one call |
//! | [`Admin::describe_topics`] | topic ids, partitions, leaders, replicas, ISR |
//! | [`Admin::describe_cluster`] | cluster id, controller, brokers and racks |
//!
//! An [`Admin`] borrows an existing [`rdkafka::admin::AdminClient`] (kept in an [`Arc`]), so
//! the calls rust-rdkafka does bind (`create_topics`, `describe_configs`, `fetch_metadata`
//! through [`AdminClient::inner`]) run on the same client and the same broker connections.
//! Every call is sent at once and answered asynchronously: calls in flight share the
//! client's connections and need no thread each. Results are plain Rust values copied out of
//! librdkafka's result event before it is freed; they borrow nothing.
//!
//! ```no_run
//! # async fn f() -> Result<(), rdkafka_admin_ext::Error> {
//! use std::sync::Arc;
//! use rdkafka::admin::AdminClient;
//! use rdkafka::client::DefaultClientContext;
//! use rdkafka::config::ClientConfig;
//! use rdkafka_admin_ext::{Admin, Options};
//!
//! let client: AdminClient<DefaultClientContext> = ClientConfig::new()
//!     .set("bootstrap.servers", "localhost:9092")
//!     .create()
//!     .expect("client");
//! let admin = Admin::new(Arc::new(client))?;
//! let groups = admin.list_consumer_groups(&Options::default()).await?;
//! for g in groups.groups {
//!     let offsets = admin
//!         .list_consumer_group_offsets(&g.group_id, None, &Options::default())
//!         .await?;
//!     println!("{}: {} committed partitions", g.group_id, offsets.len());
//! }
//! # Ok(())
//! # }
//! ```

mod calls;
mod dispatch;
mod native;
mod types;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::error::RDKafkaErrorCode;

pub use dispatch::Reply;
pub use types::*;

/// Why a call failed as a whole. Failures of single groups, partitions or topics are in
/// their results instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// librdkafka or the broker answered the request with an error (for example
    /// `OperationTimedOut` when no broker answered within the request timeout).
    #[error("{0}")]
    Kafka(KafkaCodeError),
    /// An argument librdkafka cannot take (a name with a NUL byte, an out-of-range timeout,
    /// an empty request where one entry is required).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The answer never came: the dispatcher dropped the request (only if librdkafka drops
    /// a request without answering it, which it does not while the client is alive).
    #[error("the request was dropped unanswered")]
    Dropped,
    /// An answer of another kind than the one asked for.
    #[error("unexpected answer: {0}")]
    UnexpectedEvent(String),
}

/// An error code with librdkafka's or the broker's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct KafkaCodeError {
    pub code: RDKafkaErrorCode,
    pub message: String,
}

/// Options of one call.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long librdkafka waits for the broker's answer (and for a connection to it)
    /// before answering the call with `OperationTimedOut`. Default 30 s.
    pub request_timeout: Duration,
    /// [`Admin::list_offsets`] only: read the last stable offset instead of the high
    /// watermark (`read_committed`). Default false.
    pub read_committed: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            request_timeout: Duration::from_secs(30),
            read_committed: false,
        }
    }
}

/// The admin calls, over one shared [`AdminClient`]. Cheap to share by reference; calls may
/// run concurrently from any thread.
pub struct Admin<C: ClientContext + 'static> {
    shared: Arc<dispatch::Shared<C>>,
}

impl<C: ClientContext + 'static> Admin<C> {
    /// Starts answering calls over `client`: one result queue on it, read by one thread
    /// (`rdkafka-admin-ext`). The thread ends after this `Admin` is dropped and every call in
    /// flight has been answered; the client is released then.
    pub fn new(client: Arc<AdminClient<C>>) -> Result<Admin<C>, Error> {
        Ok(Admin {
            shared: dispatch::Shared::start(client)?,
        })
    }

    /// The client the calls run on, to share with other users of the same connections.
    pub fn client(&self) -> &Arc<AdminClient<C>> {
        self.shared.client()
    }
}

impl<C: ClientContext + 'static> Drop for Admin<C> {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

impl<C: ClientContext + 'static> std::fmt::Debug for Admin<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("in_flight", &self.shared.in_flight())
            .finish()
    }
}
