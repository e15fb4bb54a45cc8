pub mod probe;
pub mod tracker;
