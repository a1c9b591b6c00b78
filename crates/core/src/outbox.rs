//! Queues of transmissions and events waiting for the driver.

use crate::io::Transmit;
use std::collections::VecDeque;

/// What a machine has produced and the driver has not yet taken.
#[derive(Debug)]
pub(crate) struct Outbox<E> {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<E>,
}

impl<E> Default for Outbox<E> {
    fn default() -> Self {
        Self {
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }
}

impl<E> Outbox<E> {
    pub(crate) fn send(&mut self, t: Transmit) {
        self.transmits.push_back(t);
    }

    pub(crate) fn event(&mut self, e: E) {
        self.events.push_back(e);
    }
}
