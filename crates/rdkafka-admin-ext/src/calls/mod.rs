//! The calls, one module per family. Each call builds its arguments (librdkafka copies
//! every argument into the request before the call returns, so they are freed right after
//! it), sends it through [`crate::dispatch::Shared::request`], and has a reader that copies
//! the answer out of the result event.

mod groups;
mod offsets;
mod topics;
