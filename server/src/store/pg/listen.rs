//! Following the change channel: one dedicated connection LISTENs on it, and every notification
//! becomes a [`Change`] for the replica. A lost connection is made again (PostgreSQL restarted,
//! the backend terminated); every (re)connection is followed by [`Change::Resync`], since the
//! notifications sent while it was down are lost, so no replica stays stale.

use std::time::Duration;

use tokio::sync::mpsc::{self, UnboundedSender};
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use super::names::{CHANNEL, CONFIG_CHANGED, IDENTITY_CHANGED};

/// Shortest and longest wait before connecting again.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What changed in the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Anything may have changed (the channel was (re)joined): read everything again.
    Resync,
    /// Groups, hubs or TPM enrollments changed.
    Config,
    /// One device id's identities changed.
    Identity(Uuid),
}

fn parse(payload: &str) -> Change {
    if payload == CONFIG_CHANGED {
        return Change::Config;
    }
    payload
        .strip_prefix(IDENTITY_CHANGED)
        .and_then(|id| Uuid::parse_str(id).ok())
        .map_or(Change::Resync, Change::Identity)
}

/// Follow the channel until the receiver is dropped.
pub(crate) async fn follow(config: tokio_postgres::Config, tx: UnboundedSender<Change>) {
    let mut wait = RETRY_MIN;
    while !tx.is_closed() {
        match listen_once(&config, &tx).await {
            Ok(()) => wait = RETRY_MIN,
            Err(e) => {
                tracing::warn!(error = %e, "PostgreSQL change channel lost; reconnecting");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

/// One connection: LISTEN, ask for a resync, forward notifications until it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &UnboundedSender<Change>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if notes_tx.send(Ok(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = notes_tx.send(Err(e));
                    return;
                }
                None => return,
            }
        }
    });
    let joined = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
    if let Err(e) = joined {
        driver.abort();
        return Err(e);
    }
    tracing::info!("following the PostgreSQL change channel");
    if tx.send(Change::Resync).is_err() {
        driver.abort();
        return Ok(());
    }
    let ended = loop {
        match notes.recv().await {
            Some(Ok(payload)) => {
                if tx.send(parse(&payload)).is_err() {
                    break Ok(());
                }
            }
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    driver.abort();
    drop(client);
    if ended.is_ok() && !tx.is_closed() {
        // The server closed the connection without an error (terminated backend): wait a little
        // before joining again.
        tokio::time::sleep(RETRY_MIN).await;
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_unknown_ones_resync() {
        let id = Uuid::from_u128(7);
        assert_eq!(parse("config"), Change::Config);
        assert_eq!(parse(&format!("identity:{id}")), Change::Identity(id));
        assert_eq!(parse("identity:nope"), Change::Resync);
        assert_eq!(parse("other"), Change::Resync);
    }
}
