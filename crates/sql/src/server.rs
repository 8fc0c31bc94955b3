//! The wire protocol: sign-in with the app's users, and each statement either answered by
//! the engine in the user's scope (a question over a subject table), answered by the catalog
//! (psql's `\dt`, a BI tool's schema browsing), or refused.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, new_empty_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{Expr, Statement, Value, visit_expressions_mut};
use datafusion_postgres::arrow_pg::datatypes::df;
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, auth::AuthManager};
use futures::{Sink, SinkExt as _};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, METADATA_USER, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use prism_web::{AppState, User};

use crate::translate::{Catalog, Subject, Translated, Unsupported, translate};

/// The statement type of the extended protocol, as `DfSessionService` keeps it: the SQL, and
/// the parsed statement with a plan that describes its answer and its parameters.
type DfStatement = (
    String,
    Option<(datafusion::sql::sqlparser::ast::Statement, LogicalPlan)>,
);

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

impl From<Unsupported> for PgWireError {
    fn from(e: Unsupported) -> PgWireError {
        // feature_not_supported
        user_error("0A000", e.to_string())
    }
}

fn engine_error(e: prism_engine::EngineError) -> PgWireError {
    match e {
        prism_engine::EngineError::Forbidden(m) => user_error("42501", m),
        prism_engine::EngineError::Invalid(m) | prism_engine::EngineError::Parse(m) => {
            user_error("22023", m)
        }
        other => user_error("XX000", other.to_string()),
    }
}

/// The endpoint's shared state: the app (users, engine, warehouse sessions), the subject
/// tables, and the catalog session that psql and BI tools browse.
pub struct Endpoint {
    app: Arc<AppState>,
    catalog: Catalog,
    /// Holds `pg_catalog`, `information_schema` and one empty table per subject — never a
    /// row of the warehouse, so a statement that reaches it can read no data.
    browse: Arc<SessionContext>,
    inner: Arc<DfSessionService>,
    sql_parser: PostgresCompatibilityParser,
}

impl Endpoint {
    /// An endpoint over the app's users and warehouse, with its model's subject tables.
    pub fn new(app: Arc<AppState>) -> Result<Endpoint, String> {
        let catalog = Catalog::of(&app.engine.model);
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "public");
        let browse = SessionContext::new_with_config(config);
        for s in catalog.subjects.values() {
            let schema = Arc::new(Schema::new(
                s.columns
                    .iter()
                    .map(|c| Field::new(&c.name, c.data_type.clone(), true))
                    .collect::<Vec<_>>(),
            ));
            let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])
                .map_err(|e| e.to_string())?;
            browse
                .register_table(s.table.as_str(), Arc::new(table))
                .map_err(|e| e.to_string())?;
        }
        setup_pg_catalog(&browse, "datafusion", AuthManager::default())
            .map_err(|e| e.to_string())?;
        let browse = Arc::new(browse);
        Ok(Endpoint {
            inner: Arc::new(DfSessionService::new(browse.clone())),
            app,
            catalog,
            browse,
            sql_parser: PostgresCompatibilityParser::new(),
        })
    }

    /// The signed-in user of a connection, read again from the store: a removed user's
    /// connection answers nothing more, a changed role counts at once.
    fn user<C: ClientInfo>(&self, client: &C) -> PgWireResult<User> {
        let name = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        self.app
            .store
            .user(&name)
            .map_err(|e| user_error("XX000", e.to_string()))?
            .ok_or_else(|| user_error("28000", format!("user \"{name}\" no longer exists")))
    }

    fn parse(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        self.sql_parser
            .parse(sql)
            .map_err(|e| user_error("42601", e.to_string()))
    }

    /// Where a statement goes: to the engine (over a subject table), to the catalog session
    /// (a read of `pg_catalog` and the like, or a session statement), or nowhere.
    fn route(&self, statement: &Statement) -> PgWireResult<Option<&Subject>> {
        if let Some(subject) = self.catalog.subject_of(statement)? {
            if !matches!(statement, Statement::Query(_)) {
                return Err(Unsupported("only SELECT reads a subject table".into()).into());
            }
            return Ok(Some(subject));
        }
        // A read-only endpoint: session settings, transactions and cursors are what clients
        // send around their questions; DDL (`CREATE EXTERNAL TABLE` would read a server
        // file), `COPY` and writes are refused before anything runs.
        let allowed = matches!(
            statement,
            Statement::Query(_)
                | Statement::Set(_)
                | Statement::ShowVariable { .. }
                | Statement::ShowVariables { .. }
                | Statement::StartTransaction { .. }
                | Statement::Commit { .. }
                | Statement::Rollback { .. }
                | Statement::Declare { .. }
                | Statement::Fetch { .. }
                | Statement::Close { .. }
                | Statement::Discard { .. }
                | Statement::Deallocate { .. }
        );
        if !allowed {
            return Err(user_error(
                "25006",
                "the SQL endpoint is read-only: SELECT, SET, SHOW and transactions only",
            ));
        }
        Ok(None)
    }

    /// Answers a question over a subject table in the user's scope, encoded as the client asked.
    async fn answer<C: ClientInfo>(
        &self,
        client: &C,
        subject: &Subject,
        statement: &Statement,
        format: &Format,
    ) -> PgWireResult<Response> {
        let user = self.user(client)?;
        let translated = translate(&self.app.engine.model, subject, statement, false)?;
        let batch = if translated.empty {
            empty_batch(&translated)
        } else {
            let audience = user.audience().map_err(engine_error)?;
            let (_, session) = self
                .app
                .session()
                .await
                .map_err(|e| user_error("55000", e.to_string()))?;
            let result = self
                .app
                .engine
                .run(&session, &translated.query, &audience)
                .await
                .map_err(engine_error)?;
            tracing::info!(user = %user.name, sql = %statement, "sql question answered");
            answer_batch(&result, &translated)?
        };
        let frame = SessionContext::new()
            .read_batch(batch)
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        Ok(Response::Query(
            df::encode_dataframe(frame, format, Some(options)).await?,
        ))
    }

    /// A plan that describes a question's answer and its parameters, for the extended
    /// protocol's Describe: the answer's columns as typed nulls over the subject's empty table,
    /// with the question's `WHERE`, so that each `$n` takes the type of the column it is
    /// compared with (`time_day` a date, a dimension text).
    async fn describe(
        &self,
        subject: &Subject,
        statement: &Statement,
    ) -> PgWireResult<LogicalPlan> {
        let translated = translate(&self.app.engine.model, subject, statement, true)?;
        let columns: Vec<String> = translated
            .columns
            .iter()
            .map(|c| {
                format!(
                    "CAST(NULL AS {}) AS \"{}\"",
                    sql_type(&c.data_type),
                    c.label.replace('"', "\"\"")
                )
            })
            .collect();
        let mut sql = format!("SELECT {} FROM \"{}\"", columns.join(", "), subject.table);
        if let Statement::Query(q) = statement
            && let datafusion::sql::sqlparser::ast::SetExpr::Select(s) = q.body.as_ref()
            && let Some(w) = &s.selection
        {
            sql.push_str(&format!(" WHERE {w}"));
        }
        self.browse
            .state()
            .create_logical_plan(&sql)
            .await
            .map_err(|e| user_error("42601", e.to_string()))
    }
}

/// The SQL spelling of an answer column's type.
fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Date32 => "DATE".into(),
        _ => "VARCHAR".into(),
    }
}

fn answer_schema(t: &Translated) -> Arc<Schema> {
    Arc::new(Schema::new(
        t.columns
            .iter()
            .map(|c| Field::new(&c.label, c.data_type.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

fn empty_batch(t: &Translated) -> RecordBatch {
    let schema = answer_schema(t);
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| new_empty_array(f.data_type()))
        .collect();
    RecordBatch::try_new(schema, columns).expect("empty columns of the schema's types")
}

/// The engine's answer as the client's columns: in the select list's order, named as it
/// named them, each cast to the type the catalog and Describe announced.
fn answer_batch(result: &prism_engine::QueryResult, t: &Translated) -> PgWireResult<RecordBatch> {
    let schema = answer_schema(t);
    let batch = datafusion::arrow::compute::concat_batches(
        &result
            .batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| Arc::new(Schema::empty())),
        &result.batches,
    )
    .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    if result.batches.is_empty() {
        return Ok(empty_batch(t));
    }
    let mut columns = Vec::new();
    for c in &t.columns {
        let i = result.column(&c.source).ok_or_else(|| {
            user_error("XX000", format!("the answer has no column `{}`", c.source))
        })?;
        let cast = datafusion::arrow::compute::cast(batch.column(i), &c.data_type)
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        columns.push(cast);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// The statement with each `$n` replaced by its bound value, as a literal.
fn bind(statement: &Statement, params: &ParamValues) -> PgWireResult<Statement> {
    let ParamValues::List(values) = params else {
        return Err(user_error("08P01", "named parameters are not supported"));
    };
    let mut bound = statement.clone();
    let mut problem = None;
    let _ = visit_expressions_mut(&mut bound, |e: &mut Expr| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &v.value
        {
            let value = p
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| values.get(i));
            match value.map(|v| v.value()) {
                Some(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s))) => {
                    v.value = Value::SingleQuotedString(s.clone());
                }
                Some(s) if !s.is_null() && s.data_type().is_numeric() => {
                    v.value = Value::Number(s.to_string(), false);
                }
                Some(s) if !s.is_null() => {
                    // A date or a timestamp: its text, which the translator reads as a date.
                    v.value = Value::SingleQuotedString(s.to_string());
                }
                _ => problem = Some(format!("parameter {p} has no value")),
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    match problem {
        Some(p) => Err(user_error("22023", p)),
        None => Ok(bound),
    }
}

#[async_trait]
impl SimpleQueryHandler for Endpoint {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.user(client)?;
        let statements = self.parse(query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        // Every statement is routed before any runs: a refused one stops them all.
        let routes = statements
            .iter()
            .map(|s| self.route(s))
            .collect::<PgWireResult<Vec<_>>>()?;
        let mut out = Vec::new();
        for (statement, route) in statements.iter().zip(routes) {
            match route {
                Some(subject) => out.push(
                    self.answer(client, subject, statement, &Format::UnifiedText)
                        .await?,
                ),
                None => out.extend(
                    SimpleQueryHandler::do_query(
                        self.inner.as_ref(),
                        client,
                        &statement.to_string(),
                    )
                    .await?,
                ),
            }
        }
        Ok(out)
    }
}

/// Parses for the extended protocol: questions over subject tables get a describing plan of
/// their own, everything else the catalog session's parser.
pub struct Parser {
    endpoint: Arc<Endpoint>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = DfStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<DfStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let e = &self.endpoint;
        let mut statements = e.parse(sql)?;
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err(user_error("42601", "a prepared statement is one statement"));
        }
        let statement = statements.remove(0);
        match e.route(&statement)? {
            Some(subject) => {
                let plan = e.describe(subject, &statement).await?;
                Ok(Some((sql.to_string(), Some((statement, plan)))))
            }
            None => e.inner.query_parser().parse_sql(client, sql, types).await,
        }
    }

    fn get_parameter_types(&self, stmt: &DfStatement) -> PgWireResult<Vec<Type>> {
        self.endpoint.inner.query_parser().get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &DfStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.endpoint
            .inner
            .query_parser()
            .get_result_schema(stmt, column_format)
    }
}

/// The extended protocol's handler.
pub struct Extended {
    endpoint: Arc<Endpoint>,
    parser: Arc<Parser>,
}

/// The parameters bound to a portal, typed as its statement's plan infers them.
fn parameters(portal: &Portal<DfStatement>, plan: &LogicalPlan) -> PgWireResult<ParamValues> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let mut ordered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(k, t)| k.trim_start_matches('$').parse().ok().map(|n| (n, t)))
        .collect();
    ordered.sort_by_key(|(n, _)| *n);
    let inferred: Vec<Option<&DataType>> = ordered.iter().map(|(_, t)| t.as_ref()).collect();
    let wire: Vec<Type> = ordered
        .iter()
        .map(|(_, t)| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
        .collect::<PgWireResult<_>>()?;
    let wire: Vec<Option<&Type>> = wire.iter().map(Some).collect();
    df::deserialize_parameters_with_server_types(portal, &inferred, &wire)
}

#[async_trait]
impl ExtendedQueryHandler for Extended {
    type Statement = DfStatement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<DfStatement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = DfStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let e = &self.endpoint;
        e.user(client)?;
        if let (_, Some((statement, plan))) = &portal.statement.statement
            && let Some(subject) = e.route(statement)?
        {
            let bound = bind(statement, &parameters(portal, plan)?)?;
            return e
                .answer(client, subject, &bound, &portal.result_column_format)
                .await;
        }
        ExtendedQueryHandler::do_query(e.inner.as_ref(), client, portal, max_rows).await
    }
}

/// Sign-in with an app user's name and password — or one of the user's API tokens — sent as
/// the password message (over TLS when the endpoint has it). Failures count toward the same throttle as the web sign-in.
pub struct SignIn {
    app: Arc<AppState>,
}

#[async_trait]
impl StartupHandler for SignIn {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let password = pwd.into_password()?.password;
                let name = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let address = client.socket_addr().ip().to_string();
                let store = &self.app.store;
                let refused = || {
                    PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".into(),
                        "28P01".into(),
                        format!("password authentication failed for user \"{name}\""),
                    )))
                };
                if let Some(wait) = store
                    .wait_for(&name, &address)
                    .map_err(|e| user_error("XX000", e.to_string()))?
                {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".into(),
                        "28000".into(),
                        format!("too many failed sign-ins: try again in {wait} s"),
                    ))));
                }
                // Argon2 takes tens of milliseconds: off the connection's thread.
                let app = self.app.clone();
                let (n, p) = (name.clone(), password);
                let user = tokio::task::spawn_blocking(move || match app.store.verify(&n, &p) {
                    Ok(None) => app.store.verify_api_token(&n, &p),
                    other => other,
                })
                .await
                .map_err(|e| user_error("XX000", e.to_string()))?
                .map_err(|e| user_error("XX000", e.to_string()))?;
                match user {
                    Some(_) => {
                        let _ = store.audit(&name, "sql sign-in", &address);
                        finish_authentication(client, &DefaultServerParameterProvider::default())
                            .await?;
                    }
                    None => {
                        let _ = store.record_failure(&name, &address);
                        let _ = store.audit(&name, "sql sign-in failed", &address);
                        return Err(refused());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The handlers of every connection.
pub struct Handlers {
    endpoint: Arc<Endpoint>,
    extended: Arc<Extended>,
    sign_in: Arc<SignIn>,
}

impl Handlers {
    pub fn new(endpoint: Endpoint) -> Handlers {
        let app = endpoint.app.clone();
        let endpoint = Arc::new(endpoint);
        Handlers {
            extended: Arc::new(Extended {
                endpoint: endpoint.clone(),
                parser: Arc::new(Parser {
                    endpoint: endpoint.clone(),
                }),
            }),
            endpoint,
            sign_in: Arc::new(SignIn { app }),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.endpoint.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.extended.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.sign_in.clone()
    }
}
