//! `prism load --from postgres://...`: the rows of a mapping's entities read from a PostgreSQL
//! database — a query or a table per entity — in batches through a cursor, inside one
//! read-only transaction so that every entity is read from the same snapshot of the database.

use prism_contract::mapping::{From, MappingError, Source, Table};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Rows fetched from the cursor at a time.
const BATCH: usize = 10_000;

/// A connection to the database, reading in one repeatable-read transaction.
pub struct Postgres {
    client: Client,
    runtime: tokio::runtime::Runtime,
    cursors: usize,
}

impl Postgres {
    /// Connects (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`) and opens the transaction.
    pub fn connect(url: &str) -> Result<Postgres, MappingError> {
        let shown = redacted(url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MappingError::Io(e.to_string()))?;
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, NoTls)
                .await
                .map_err(|e| MappingError::Io(format!("--from {shown}: {e}")))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!("the database connection ended: {e}");
                }
            });
            // One snapshot for every entity: a row added while Prism reads is in all of them
            // or in none.
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(|e| MappingError::Io(format!("--from {shown}: {e}")))?;
            Ok::<_, MappingError>(client)
        })?;
        Ok(Postgres {
            client,
            runtime,
            cursors: 0,
        })
    }
}

impl Source for Postgres {
    fn read(&mut self, from: &From, name: &str) -> Result<Table, MappingError> {
        let sql = match (&from.query, &from.table) {
            (Some(q), _) => q.trim().trim_end_matches(';').to_string(),
            (None, Some(t)) => format!(
                "SELECT * FROM {}",
                t.split('.')
                    .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
                    .collect::<Vec<_>>()
                    .join(".")
            ),
            _ => {
                return Err(MappingError::Invalid(format!(
                    "{name}: a file is read from an export folder; from a database, give a `query` or a `table`"
                )));
            }
        };
        self.cursors += 1;
        let cursor = format!("prism_rows_{}", self.cursors);
        let client = &self.client;
        self.runtime.block_on(async {
            let fail = |e: tokio_postgres::Error| {
                let detail = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string());
                MappingError::Invalid(format!("{name}: {detail}"))
            };
            client
                .batch_execute(&format!("DECLARE {cursor} NO SCROLL CURSOR FOR {sql}"))
                .await
                .map_err(fail)?;
            let mut header: Vec<String> = Vec::new();
            let mut rows: Vec<Vec<String>> = Vec::new();
            loop {
                let messages = client
                    .simple_query(&format!("FETCH {BATCH} FROM {cursor}"))
                    .await
                    .map_err(fail)?;
                let mut fetched = 0;
                for m in messages {
                    match m {
                        SimpleQueryMessage::RowDescription(columns) if header.is_empty() => {
                            header = columns.iter().map(|c| c.name().to_string()).collect();
                        }
                        SimpleQueryMessage::Row(row) => {
                            fetched += 1;
                            rows.push(
                                (0..row.len())
                                    .map(|i| row.get(i).unwrap_or_default().to_string())
                                    .collect(),
                            );
                        }
                        _ => {}
                    }
                }
                if fetched < BATCH {
                    break;
                }
            }
            client
                .batch_execute(&format!("CLOSE {cursor}"))
                .await
                .map_err(fail)?;
            Ok(Table::new(name, header, rows))
        })
    }
}

/// The URL with its password masked, for messages and the load history; one that cannot be
/// read is not repeated at all (it may hold a password where a URL would not).
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "the database".into(),
    }
}
