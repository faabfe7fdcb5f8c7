//! Where worker log events go inside the server: a bounded buffer of recent lines, live
//! subscribers, and any extra sinks (the dev terminal).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use homebase_runtime::{LogEvent, LogSink};
use tokio::sync::broadcast;

/// Keeps the most recent events and fans every event out to subscribers and sinks.
pub struct LogHub {
    recent: Mutex<VecDeque<LogEvent>>,
    capacity: usize,
    live: broadcast::Sender<LogEvent>,
    sinks: Vec<Arc<dyn LogSink>>,
}

impl LogHub {
    pub fn new(capacity: usize, sinks: Vec<Arc<dyn LogSink>>) -> Arc<LogHub> {
        let (live, _) = broadcast::channel(1024);
        Arc::new(LogHub { recent: Mutex::new(VecDeque::with_capacity(capacity.min(4096))), capacity, live, sinks })
    }

    /// The kept events, oldest first.
    pub fn recent(&self) -> Vec<LogEvent> {
        self.recent.lock().unwrap().iter().cloned().collect()
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogEvent> {
        self.live.subscribe()
    }
}

impl LogSink for LogHub {
    fn emit(&self, event: LogEvent) {
        for sink in &self.sinks {
            sink.emit(event.clone());
        }
        let _ = self.live.send(event.clone());
        let mut recent = self.recent.lock().unwrap();
        if recent.len() == self.capacity {
            recent.pop_front();
        }
        recent.push_back(event);
    }
}
