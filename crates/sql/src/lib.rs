//! The SQL endpoint: Prism's metrics for the tools people already use — psql, Metabase,
//! Superset, DBeaver, Excel — over the Postgres wire protocol.
//!
//! A client signs in as a user of the app (name and password); every question it asks is
//! translated to one semantic query (`translate`) and answered by the engine in that user's
//! scope, with the rollups and the result cache, so a figure over SQL is the figure of the
//! app's own page for the same question. The catalog a client browses (`pg_catalog`,
//! `information_schema`) lists one table per subject area, which holds no rows: no SQL
//! reaches the warehouse's tables.
#![warn(missing_docs)]

mod server;
pub mod translate;

use std::path::Path;
use std::sync::Arc;

use datafusion_postgres::pgwire;
use pgwire::tokio::tokio_rustls::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
};
use prism_web::AppState;
use tokio::net::TcpListener;

pub use server::Endpoint;

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The certificate or key could not be read or used.
    #[error("{0}")]
    Tls(String),
    /// The listener or the session could not be set up.
    #[error("the SQL endpoint: {0}")]
    Setup(String),
}

/// TLS from a PEM certificate chain and its private key; each file's problem is named.
pub fn tls(cert: &Path, key: &Path) -> Result<TlsAcceptor, SqlError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| SqlError::Tls(format!("--sql-tls-cert {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(SqlError::Tls(format!(
            "--sql-tls-cert {}: no certificate in it",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| SqlError::Tls(format!("--sql-tls-key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| SqlError::Tls(format!("the certificate and its key: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Answers connections on `listener` until the task is dropped; one connection's failure is
/// logged and ends only that connection.
pub async fn serve(
    app: Arc<AppState>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) -> Result<(), SqlError> {
    let handlers = Arc::new(server::Handlers::new(
        Endpoint::new(app).map_err(SqlError::Setup)?,
    ));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("sql endpoint: accepting a connection: {e}");
                continue;
            }
        };
        let handlers = handlers.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::info!("sql connection from {peer}: {e}");
            }
        });
    }
}
