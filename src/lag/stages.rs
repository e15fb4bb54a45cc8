//! Wall time of each stage of a poll, for the debug log.

use std::time::Instant;

/// Wall time of each stage of a poll, for the debug log.
pub struct Stages {
    last: Instant,
    done: Vec<(&'static str, f64)>,
}

impl Stages {
    pub fn new() -> Stages {
        Stages {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    pub fn done(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.done.push((stage, (now - self.last).as_secs_f64()));
        self.last = now;
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (stage, s)) in self.done.iter().enumerate() {
            write!(f, "{}{stage}={s:.3}s", if i > 0 { " " } else { "" })?;
        }
        Ok(())
    }
}
