//! Revokes renewed devices' earlier certificates once their grace period is
//! over: checks the PKI's schedule every few seconds and rewrites the CRL when
//! something is due (nodes pick it up within their poll interval and close
//! sessions still using a revoked certificate).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Renewer;

pub(super) async fn run(renewer: Arc<Renewer>, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let pki = renewer.pki();
        let done = tokio::task::spawn_blocking(move || {
            let pki = pki.lock().unwrap_or_else(|e| e.into_inner());
            pki.revoke_due(time::OffsetDateTime::now_utc())
        })
        .await;
        match done {
            Ok(Ok(serials)) if !serials.is_empty() => {
                tracing::info!(
                    revoked = serials.len(),
                    "superseded device certificates revoked"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "revoking superseded certificates failed"),
            Err(e) => tracing::error!(error = %e, "the revocation task failed"),
        }
    }
}
