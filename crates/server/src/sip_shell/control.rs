//! Requests from the JSON API to the SIP shell, which owns the call table: answered over a
//! channel so the call table keeps one owner.

use tokio::sync::mpsc;

/// One request to the shell.
pub(crate) enum ControlMsg {}

/// The API's handle on the shell.
#[derive(Clone)]
pub(crate) struct Control {
    #[allow(dead_code)]
    tx: mpsc::UnboundedSender<ControlMsg>,
}

impl Control {
    /// A handle and the receiver the shell reads.
    pub(crate) fn new() -> (Control, mpsc::UnboundedReceiver<ControlMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Control { tx }, rx)
    }
}
