//! Following the revocations every replica writes (`StoreBackend::follow`).
//!
//! A task on the store's runtime (`vigile-store`, not the proxy's: the
//! request path never waits on it) holds one connection of its own, outside
//! the pool, that `LISTEN`s on `revocations::CHANNEL`. On each notification,
//! every `store.sync_interval`, and first on every (re)connection, it reads
//! what was committed after the last number it applied (`revocations::since`,
//! whose numbers are in commit order) and hands it to the replica. A lost
//! notification thus costs at most `sync_interval`; a lost connection is
//! made again (after `sync_interval`, one second at most), and the catch-up
//! that follows brings everything missed meanwhile.
//!
//! Each successful read marks the replica's `SyncStatus` current; a failure
//! marks it down. A second task checks the status on a short timer, so that
//! a call that hangs (bounded by `CALL_TIMEOUT` anyway) cannot keep a view
//! looking current past `store.max_staleness`.

use std::time::Duration;

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{revocations, CALL_TIMEOUT, CONNECT_TIMEOUT};
use crate::store::{Follow, StoreError, StoreResult};

/// Most rows read at once while catching up.
const BATCH: usize = 10_000;

/// How to open the listening connection.
#[derive(Clone)]
pub(super) struct Listener {
    pub settings: tokio_postgres::Config,
    pub tls: Option<MakeRustlsConnect>,
}

/// Follows until the task is aborted (`PgStore::close`).
pub(super) async fn run(listener: Listener, follow: Follow) {
    let mut last = follow.from_seq;
    let retry = follow.sync_interval.min(Duration::from_secs(1));
    loop {
        let outcome = match &listener.tls {
            Some(tls) => session(&listener.settings, tls.clone(), &follow, &mut last).await,
            None => session(&listener.settings, NoTls, &follow, &mut last).await,
        };
        if let Err(e) = outcome {
            follow.status.failed(&e.to_string());
        }
        tokio::time::sleep(retry).await;
    }
}

/// Marks the view stale when it is; until the task is aborted.
pub(super) async fn watch(follow_status: std::sync::Arc<crate::store::SyncStatus>) {
    let mut every = tokio::time::interval(follow_status.check_every());
    loop {
        every.tick().await;
        follow_status.check();
    }
}

/// One connection: listen, catch up, then catch up again on every
/// notification and every `sync_interval`, until it fails.
async fn session<T>(
    settings: &tokio_postgres::Config,
    tls: T,
    follow: &Follow,
    last: &mut u64,
) -> StoreResult<()>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) =
        match tokio::time::timeout(CONNECT_TIMEOUT, settings.connect(tls)).await {
            Ok(connected) => connected?,
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "no connection to PostgreSQL within {CONNECT_TIMEOUT:?}"
                )))
            }
        };
    // The connection's messages: notifications are passed on; the channel
    // closes when the connection ends.
    let (notified, mut notifications) = tokio::sync::mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if notified.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let _abort = AbortOnDrop(driver);
    bounded(client.batch_execute(&format!("LISTEN {}", revocations::CHANNEL))).await?;
    let mut every = tokio::time::interval(follow.sync_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        catch_up(&client, follow, last).await?;
        follow.status.synced();
        tokio::select! {
            heard = notifications.recv() => {
                if heard.is_none() {
                    return Err(StoreError::Unavailable(
                        "the connection to PostgreSQL closed".into(),
                    ));
                }
                // Several announcements read at once.
                while notifications.try_recv().is_ok() {}
            }
            _ = every.tick() => {}
        }
    }
}

/// Applies every revocation committed after `last`, and moves `last` on.
async fn catch_up(
    client: &tokio_postgres::Client,
    follow: &Follow,
    last: &mut u64,
) -> StoreResult<()> {
    loop {
        let batch = bounded(revocations::since(client, *last, BATCH)).await?;
        let Some(newest) = batch.last() else {
            return Ok(());
        };
        *last = newest.seq;
        (follow.apply)(&batch);
        if batch.len() < BATCH {
            return Ok(());
        }
    }
}

/// `work` within `CALL_TIMEOUT`.
async fn bounded<T, E: Into<StoreError>>(
    work: impl std::future::Future<Output = Result<T, E>>,
) -> StoreResult<T> {
    match tokio::time::timeout(CALL_TIMEOUT, work).await {
        Ok(out) => out.map_err(Into::into),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from PostgreSQL within {CALL_TIMEOUT:?}"
        ))),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
