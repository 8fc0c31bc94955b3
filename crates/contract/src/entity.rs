//! The entities of the data contract (`docs/data-contract.md`), column by column.
//!
//! Everything the loader, the generator and the warehouse know about a file's shape comes from
//! the tables in this module, so the contract is written down exactly once.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Money is stored exactly as Decimal128 with this precision and two decimals.
pub const MONEY_PRECISION: u8 = 18;
/// Money's decimals: cents.
pub const MONEY_SCALE: i8 = 2;

/// An entity of the contract: one CSV file in an export, one table in the warehouse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// `partners.csv`: the partners that sell the brand owner's products.
    Partners,
    /// `products.csv`: the brand owner's products.
    Products,
    /// `customers.csv`: the end customers partners sell to and serve.
    Customers,
    /// `orders.csv`: closed revenue, one row per order line.
    Orders,
    /// `opportunities.csv`: pipeline and win/loss.
    Opportunities,
    /// `service_requests.csv`: service performance.
    ServiceRequests,
    /// `satisfaction_surveys.csv`: customer satisfaction.
    SatisfactionSurveys,
    /// `campaigns.csv`: marketing campaigns of a partner or of the brand owner.
    Campaigns,
    /// `deal_registrations.csv`: deals partners register for protection.
    DealRegistrations,
    /// `mdf_requests.csv`: market development funds asked for and claimed.
    MdfRequests,
    /// `certifications.csv`: partner staff enablement.
    Certifications,
}

/// The type of a column as the contract states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// An exact string (ids are compared exactly, names may hold any Unicode).
    Text,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]`, stored in UTC.
    Timestamp,
    /// Money: `.` as the decimal point, no thousands separator, up to two decimals.
    Money,
    /// A whole number.
    Integer,
    /// `true`/`false`, `1`/`0` or `yes`/`no`.
    Bool,
}

/// A rule beyond the type that a column's values must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// No rule beyond the type.
    None,
    /// One of these spellings (matched case-insensitively, stored as written here).
    OneOf(&'static [&'static str]),
    /// An integer within an inclusive range.
    Range(i64, i64),
    /// An integer greater than zero.
    Positive,
    /// Money that is zero or more.
    NonNegative,
    /// An id that must exist in another entity (in this export or in the warehouse).
    References(Entity),
    /// A date or timestamp that must not precede the one in the named column of the same row.
    NotBefore(&'static str),
    /// Money that must not exceed the money in the named column of the same row, which must
    /// then be given (a payment needs a claim to be checked against).
    NotMoreThan(&'static str),
    /// A value that must be one of the values of a column of another entity (in this export
    /// or in the warehouse): a product line that some product has.
    ValueOf(Entity, &'static str),
}

/// One column of an entity's file and table.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Its name in the CSV header and the table.
    pub name: &'static str,
    /// The type its values are read as.
    pub ty: ColumnType,
    /// Whether every row must give it.
    pub required: bool,
    /// What its values must satisfy beyond the type.
    pub rule: Rule,
}

const fn col(name: &'static str, ty: ColumnType, required: bool, rule: Rule) -> Column {
    Column {
        name,
        ty,
        required,
        rule,
    }
}

use ColumnType::*;

/// Partner program tiers.
pub const TIERS: &[&str] = &["Platinum", "Gold", "Silver", "Registered"];
/// A partner's status.
pub const PARTNER_STATUSES: &[&str] = &["Active", "Inactive"];
/// Customer size bands.
pub const SIZE_BANDS: &[&str] = &["SMB", "Mid-Market", "Enterprise"];
/// Opportunity stages, open ones first.
pub const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Proposal",
    "Negotiation",
    "Closed Won",
    "Closed Lost",
];
/// Service request priorities, P1 the most urgent.
pub const PRIORITIES: &[&str] = &["P1", "P2", "P3", "P4"];
/// A deal registration's statuses.
pub const REGISTRATION_STATUSES: &[&str] = &["Pending", "Approved", "Rejected", "Expired"];
/// A fund request's statuses.
pub const MDF_STATUSES: &[&str] = &["Submitted", "Approved", "Rejected", "Claimed", "Paid"];
/// Certification tracks.
pub const TRACKS: &[&str] = &["Sales", "Presales", "Technical", "Support"];
/// Certification levels.
pub const LEVELS: &[&str] = &["Associate", "Professional", "Expert"];

const PARTNERS: &[Column] = &[
    col("partner_id", Text, true, Rule::None),
    col("partner_name", Text, true, Rule::None),
    col("tier", Text, true, Rule::OneOf(TIERS)),
    col("partner_type", Text, true, Rule::None),
    col("region", Text, true, Rule::None),
    col("country", Text, false, Rule::None),
    col("joined_on", Date, false, Rule::None),
    col("status", Text, true, Rule::OneOf(PARTNER_STATUSES)),
];

const PRODUCTS: &[Column] = &[
    col("product_id", Text, true, Rule::None),
    col("product_name", Text, true, Rule::None),
    col("product_line", Text, true, Rule::None),
    col("category", Text, false, Rule::None),
    col("list_price", Money, false, Rule::None),
];

const CUSTOMERS: &[Column] = &[
    col("customer_id", Text, true, Rule::None),
    col("customer_name", Text, true, Rule::None),
    col("industry", Text, true, Rule::None),
    col("size_band", Text, true, Rule::OneOf(SIZE_BANDS)),
    col("region", Text, true, Rule::None),
    col("country", Text, false, Rule::None),
    col("annual_revenue", Money, false, Rule::None),
];

const ORDERS: &[Column] = &[
    col("order_id", Text, true, Rule::None),
    col("line_number", Integer, true, Rule::None),
    col(
        "partner_id",
        Text,
        false,
        Rule::References(Entity::Partners),
    ),
    col(
        "customer_id",
        Text,
        true,
        Rule::References(Entity::Customers),
    ),
    col("product_id", Text, true, Rule::References(Entity::Products)),
    col("order_date", Date, true, Rule::None),
    col("quantity", Integer, true, Rule::Positive),
    col("revenue", Money, true, Rule::None),
    col("cost", Money, false, Rule::None),
];

const OPPORTUNITIES: &[Column] = &[
    col("opportunity_id", Text, true, Rule::None),
    col(
        "partner_id",
        Text,
        false,
        Rule::References(Entity::Partners),
    ),
    col(
        "customer_id",
        Text,
        true,
        Rule::References(Entity::Customers),
    ),
    col("product_id", Text, true, Rule::References(Entity::Products)),
    col("stage", Text, true, Rule::OneOf(STAGES)),
    col("amount", Money, true, Rule::NonNegative),
    col("probability", Integer, true, Rule::Range(0, 100)),
    col("created_on", Date, true, Rule::None),
    col("close_date", Date, true, Rule::None),
    col("deal_registered", Bool, false, Rule::None),
    col(
        "campaign_id",
        Text,
        false,
        Rule::References(Entity::Campaigns),
    ),
];

const SERVICE_REQUESTS: &[Column] = &[
    col("request_id", Text, true, Rule::None),
    col("partner_id", Text, true, Rule::References(Entity::Partners)),
    col(
        "customer_id",
        Text,
        true,
        Rule::References(Entity::Customers),
    ),
    col(
        "product_id",
        Text,
        false,
        Rule::References(Entity::Products),
    ),
    col("priority", Text, true, Rule::OneOf(PRIORITIES)),
    col("opened_at", Timestamp, true, Rule::None),
    col(
        "first_response_at",
        Timestamp,
        false,
        Rule::NotBefore("opened_at"),
    ),
    col(
        "resolved_at",
        Timestamp,
        false,
        Rule::NotBefore("opened_at"),
    ),
];

const SATISFACTION_SURVEYS: &[Column] = &[
    col("survey_id", Text, true, Rule::None),
    col("partner_id", Text, true, Rule::References(Entity::Partners)),
    col(
        "customer_id",
        Text,
        true,
        Rule::References(Entity::Customers),
    ),
    col("request_id", Text, false, Rule::None),
    col("surveyed_on", Date, true, Rule::None),
    col("score", Integer, true, Rule::Range(1, 5)),
];

const CAMPAIGNS: &[Column] = &[
    col("campaign_id", Text, true, Rule::None),
    col("campaign_name", Text, true, Rule::None),
    col(
        "partner_id",
        Text,
        false,
        Rule::References(Entity::Partners),
    ),
    col(
        "product_id",
        Text,
        false,
        Rule::References(Entity::Products),
    ),
    col("target_industry", Text, false, Rule::None),
    col("target_size_band", Text, false, Rule::OneOf(SIZE_BANDS)),
    col("channel", Text, false, Rule::None),
    col("start_on", Date, true, Rule::None),
    col("end_on", Date, true, Rule::NotBefore("start_on")),
];

const DEAL_REGISTRATIONS: &[Column] = &[
    col("registration_id", Text, true, Rule::None),
    col("partner_id", Text, true, Rule::References(Entity::Partners)),
    col(
        "customer_id",
        Text,
        true,
        Rule::References(Entity::Customers),
    ),
    col(
        "product_id",
        Text,
        false,
        Rule::References(Entity::Products),
    ),
    col("amount", Money, true, Rule::NonNegative),
    col("submitted_on", Date, true, Rule::None),
    col("decided_on", Date, false, Rule::NotBefore("submitted_on")),
    col("status", Text, true, Rule::OneOf(REGISTRATION_STATUSES)),
    col(
        "opportunity_id",
        Text,
        false,
        Rule::References(Entity::Opportunities),
    ),
];

const MDF_REQUESTS: &[Column] = &[
    col("mdf_request_id", Text, true, Rule::None),
    col("partner_id", Text, true, Rule::References(Entity::Partners)),
    col(
        "campaign_id",
        Text,
        false,
        Rule::References(Entity::Campaigns),
    ),
    col("requested_on", Date, true, Rule::None),
    col("requested_amount", Money, true, Rule::NonNegative),
    col("approved_amount", Money, false, Rule::NonNegative),
    col("claimed_amount", Money, false, Rule::NonNegative),
    col(
        "paid_amount",
        Money,
        false,
        Rule::NotMoreThan("claimed_amount"),
    ),
    col("status", Text, true, Rule::OneOf(MDF_STATUSES)),
];

const CERTIFICATIONS: &[Column] = &[
    col("certification_id", Text, true, Rule::None),
    col("partner_id", Text, true, Rule::References(Entity::Partners)),
    col("person_id", Text, true, Rule::None),
    col("track", Text, true, Rule::OneOf(TRACKS)),
    col(
        "product_line",
        Text,
        false,
        Rule::ValueOf(Entity::Products, "product_line"),
    ),
    col("level", Text, false, Rule::OneOf(LEVELS)),
    col("earned_on", Date, true, Rule::None),
    col("expires_on", Date, false, Rule::NotBefore("earned_on")),
];

impl Entity {
    /// Every entity, in the order in which a load validates them: each after the entities
    /// its references point to, so that they can be checked against the same export.
    pub const ALL: [Entity; 11] = [
        Entity::Partners,
        Entity::Products,
        Entity::Customers,
        Entity::Campaigns,
        Entity::Orders,
        Entity::Opportunities,
        Entity::ServiceRequests,
        Entity::SatisfactionSurveys,
        Entity::DealRegistrations,
        Entity::MdfRequests,
        Entity::Certifications,
    ];

    /// The table's name in the warehouse.
    pub fn name(self) -> &'static str {
        match self {
            Entity::Partners => "partners",
            Entity::Products => "products",
            Entity::Customers => "customers",
            Entity::Orders => "orders",
            Entity::Opportunities => "opportunities",
            Entity::ServiceRequests => "service_requests",
            Entity::SatisfactionSurveys => "satisfaction_surveys",
            Entity::Campaigns => "campaigns",
            Entity::DealRegistrations => "deal_registrations",
            Entity::MdfRequests => "mdf_requests",
            Entity::Certifications => "certifications",
        }
    }

    /// The entity of a name (`orders`), if it is one.
    pub fn from_name(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The file's name in an export.
    pub fn file_name(self) -> String {
        format!("{}.csv", self.name())
    }

    /// Its columns, in the contract's order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Entity::Partners => PARTNERS,
            Entity::Products => PRODUCTS,
            Entity::Customers => CUSTOMERS,
            Entity::Orders => ORDERS,
            Entity::Opportunities => OPPORTUNITIES,
            Entity::ServiceRequests => SERVICE_REQUESTS,
            Entity::SatisfactionSurveys => SATISFACTION_SURVEYS,
            Entity::Campaigns => CAMPAIGNS,
            Entity::DealRegistrations => DEAL_REGISTRATIONS,
            Entity::MdfRequests => MDF_REQUESTS,
            Entity::Certifications => CERTIFICATIONS,
        }
    }

    /// The columns whose values together identify a row: unique within an export, and the key
    /// by which a later export replaces a stored row.
    pub fn key(self) -> &'static [&'static str] {
        match self {
            Entity::Partners => &["partner_id"],
            Entity::Products => &["product_id"],
            Entity::Customers => &["customer_id"],
            Entity::Orders => &["order_id", "line_number"],
            Entity::Opportunities => &["opportunity_id"],
            Entity::ServiceRequests => &["request_id"],
            Entity::SatisfactionSurveys => &["survey_id"],
            Entity::Campaigns => &["campaign_id"],
            Entity::DealRegistrations => &["registration_id"],
            Entity::MdfRequests => &["mdf_request_id"],
            Entity::Certifications => &["certification_id"],
        }
    }

    /// The dimensions a first load cannot do without; every other file may be absent, which
    /// means no rows of it (campaigns, deal registrations, funds and certifications are
    /// optional in every export: not every brand owner runs those programs).
    pub fn is_dimension(self) -> bool {
        matches!(
            self,
            Entity::Partners | Entity::Products | Entity::Customers
        )
    }

    /// Whether another entity's rows refer to this one's ids, so that a load must know them.
    pub fn is_referenced(self) -> bool {
        Entity::ALL.iter().any(|e| {
            e.columns()
                .iter()
                .any(|c| matches!(c.rule, Rule::References(t) if t == self))
        })
    }

    /// The position of a column among `columns`.
    pub fn column_index(self, name: &str) -> Option<usize> {
        self.columns().iter().position(|c| c.name == name)
    }

    /// The Arrow schema of the entity's table in the warehouse.
    pub fn schema(self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns()
            .iter()
            .map(|c| Field::new(c.name, arrow_type(c.ty), !c.required))
            .collect();
        Arc::new(Schema::new(fields))
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The Arrow type a column of this type is stored as.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        Text => DataType::Utf8,
        Date => DataType::Date32,
        Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Money => DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE),
        Integer => DataType::Int64,
        Bool => DataType::Boolean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_names_a_column_of_its_entity_and_every_key_column_is_required() {
        for e in Entity::ALL {
            for c in e.columns() {
                if let Rule::NotBefore(other) | Rule::NotMoreThan(other) = c.rule {
                    assert!(
                        e.column_index(other).is_some(),
                        "{e}.{} refers to {other}",
                        c.name
                    );
                }
            }
            for k in e.key() {
                let c = &e.columns()[e.column_index(k).expect("key column exists")];
                assert!(c.required, "{e}.{k} is a key and must be required");
            }
        }
    }
}
