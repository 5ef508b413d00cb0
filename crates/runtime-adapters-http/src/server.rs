//! `HttpControlPlane`: binds in its constructor, serves until the runtime's stop signal.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use runtime_contracts::{ControlEndpoint, ControlPlane, EndpointError, StopSignal};
use tokio::net::TcpListener;

use crate::HttpConfig;
use crate::routes::router;

/// How long open connections may finish after stop before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The HTTP control plane: a bound listener waiting for [`ControlEndpoint::serve`].
pub struct HttpControlPlane {
    config: HttpConfig,
    local_addr: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
}

impl std::fmt::Debug for HttpControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpControlPlane")
            .field("local_addr", &self.local_addr)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpControlPlane {
    /// Checks the configuration and binds its address, so a taken port or an unsafe
    /// setting fails start-up before anything runs.
    ///
    /// # Errors
    /// [`EndpointError::Config`] for a non-loopback address without a token, a zero body
    /// limit or a zero timeout; [`EndpointError::Io`] when the address cannot be bound.
    pub async fn bind(config: HttpConfig) -> Result<HttpControlPlane, EndpointError> {
        let has_token = config.token.as_ref().is_some_and(|t| !t.is_empty());
        if !config.bind.ip().is_loopback() && !has_token {
            return Err(EndpointError::Config(format!(
                "refusing to serve the control plane on non-loopback address {} without a \
                 token: set control.token or bind 127.0.0.1",
                config.bind
            )));
        }
        if config.body_limit_bytes == 0 {
            return Err(EndpointError::Config(
                "control body limit must be at least 1 byte".into(),
            ));
        }
        if config.request_timeout.is_zero() {
            return Err(EndpointError::Config(
                "control request timeout must be above zero".into(),
            ));
        }
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|e| EndpointError::Io {
                message: format!("cannot bind the control plane to {}: {e}", config.bind),
                source: Some(Box::new(e)),
            })?;
        let local_addr = listener.local_addr().map_err(|e| EndpointError::Io {
            message: format!("cannot read the control plane's bound address: {e}"),
            source: Some(Box::new(e)),
        })?;
        Ok(HttpControlPlane {
            config,
            local_addr,
            listener: Mutex::new(Some(listener)),
        })
    }

    /// The address actually bound (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The configuration it was bound with.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }
}

#[async_trait]
impl ControlEndpoint for HttpControlPlane {
    fn name(&self) -> &str {
        "http"
    }

    /// Serves on the listener bound by [`HttpControlPlane::bind`] until `stop` fires,
    /// then lets open requests finish for a short grace. Runs once.
    async fn serve(
        &self,
        plane: Arc<dyn ControlPlane>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), EndpointError> {
        let listener = self
            .listener
            .lock()
            .ok()
            .and_then(|mut l| l.take())
            .ok_or_else(|| {
                EndpointError::Config("the http control plane serves only once".into())
            })?;
        let app = router(plane, &self.config);
        tracing::info!(
            addr = %self.local_addr,
            admin = self.config.token.as_ref().is_some_and(|t| !t.is_empty()),
            "control plane listening"
        );
        let graceful = stop.clone();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { graceful.stopped().await })
            .into_future();
        let grace = async {
            stop.stopped().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            r = server => r.map_err(|e| EndpointError::Io {
                message: format!("control plane server failed: {e}"),
                source: Some(Box::new(e)),
            })?,
            () = grace => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "control plane connections still open after stop; closing them");
            }
        }
        tracing::info!(addr = %self.local_addr, "control plane stopped");
        Ok(())
    }
}
