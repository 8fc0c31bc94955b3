//! Whose data a request may read: one `Audience`, built once per request from the signed-in
//! user or the CLI's flag, carried by every query, and narrowed only through `narrow_to`.
//!
//! The compiler applies it to every fact scan (`scope_condition`); nothing outside this crate
//! can see or build the rows' condition. A partner user's audience never holds another partner,
//! a partner user without a partner has no audience at all, and the one answer that looks past
//! an audience — the channel benchmark — is an audience of its own whose figures are withheld
//! wherever fewer than `BENCHMARK_MIN_PARTNERS` partners contribute.

use std::collections::BTreeSet;

use crate::{EngineError, Scope};

/// Whose data a query may read. Every query carries one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Audience {
    scope: Scope,
    /// The channel benchmark: every partner's rows, no direct sales, aggregates over at least
    /// `BENCHMARK_MIN_PARTNERS` partners only.
    benchmark: bool,
}

impl Audience {
    /// Every partner and direct sales: a brand-owner user (executive, administrator), or the
    /// CLI run by the warehouse's owner.
    pub fn everyone() -> Audience {
        Audience {
            scope: Scope::All,
            benchmark: false,
        }
    }

    /// The partners a channel manager manages (none: an audience that sees no rows).
    pub fn partners(ids: impl IntoIterator<Item = String>) -> Audience {
        Audience {
            scope: Scope::Partners(ids.into_iter().collect()),
            benchmark: false,
        }
    }

    /// One partner's own rows, never direct sales: a partner user. A partner user without a
    /// partner is refused rather than given an audience that matches nothing by accident.
    pub fn partner(id: impl Into<String>) -> Result<Audience, EngineError> {
        let id = id.into();
        if id.trim().is_empty() {
            return Err(EngineError::Forbidden(
                "a partner user without a partner sees nothing: ask an administrator to set one"
                    .into(),
            ));
        }
        Ok(Audience {
            scope: Scope::Partner(id),
            benchmark: false,
        })
    }

    /// The channel benchmark: figures over every partner's rows, each withheld where fewer
    /// than `BENCHMARK_MIN_PARTNERS` partners contribute to it. Any user may read it.
    pub fn channel_benchmark() -> Audience {
        Audience {
            scope: Scope::All,
            benchmark: true,
        }
    }

    /// The same audience limited to one partner, or `Forbidden` when the partner is outside it:
    /// a partner user asking for another partner, a channel manager for one they do not manage.
    /// The benchmark narrows to no partner: it never answers for one.
    pub fn narrow_to(&self, partner: &str) -> Result<Audience, EngineError> {
        if self.benchmark {
            return Err(EngineError::Forbidden(format!(
                "partner {partner}: the channel benchmark never answers for one partner"
            )));
        }
        match &self.scope {
            Scope::Partner(own) if own != partner => Err(EngineError::Forbidden(format!(
                "partner {partner}: a partner user sees only their own partner ({own})"
            ))),
            Scope::Partners(set) if !set.contains(partner) => Err(EngineError::Forbidden(format!(
                "partner {partner} is not one of the partners you manage"
            ))),
            _ => Audience::partner(partner),
        }
    }

    /// The brand owner's view of the whole channel, for the one read that must look past a
    /// channel manager's partners (customer potential: whether a customer bought a product
    /// from anyone). `Forbidden` to a partner user and to the benchmark: whether a customer
    /// bought from another partner is never a partner's to know.
    pub fn brand_owner_view(&self) -> Result<Audience, EngineError> {
        match (&self.scope, self.benchmark) {
            (Scope::All | Scope::Partners(_), false) => Ok(Audience::everyone()),
            _ => Err(EngineError::Forbidden(
                "only the brand owner's users see the whole channel".into(),
            )),
        }
    }

    /// Whether its rows include this partner's.
    pub fn sees(&self, partner: &str) -> bool {
        !self.benchmark
            && match &self.scope {
                Scope::All => true,
                Scope::Partners(set) => set.contains(partner),
                Scope::Partner(own) => own == partner,
            }
    }

    /// The partner, for a partner user's audience.
    pub fn own_partner(&self) -> Option<&str> {
        match (&self.scope, self.benchmark) {
            (Scope::Partner(own), false) => Some(own),
            _ => None,
        }
    }

    /// The partners, for a channel manager's audience.
    pub fn managed_partners(&self) -> Option<&BTreeSet<String>> {
        match (&self.scope, self.benchmark) {
            (Scope::Partners(set), false) => Some(set),
            _ => None,
        }
    }

    /// Whether it sees every partner and direct sales.
    pub fn is_everyone(&self) -> bool {
        self.scope == Scope::All && !self.benchmark
    }

    /// Whether it is the channel benchmark.
    pub fn is_benchmark(&self) -> bool {
        self.benchmark
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Refuses the benchmark for a read of rows or members: it answers only aggregates.
    pub(crate) fn rows_scope(&self) -> Result<&Scope, EngineError> {
        if self.benchmark {
            return Err(EngineError::Forbidden(
                "the channel benchmark answers aggregates only, never rows or members".into(),
            ));
        }
        Ok(&self.scope)
    }
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.scope, self.benchmark) {
            (_, true) => write!(
                f,
                "channel benchmark (every partner, figures over fewer than {} partners withheld)",
                crate::BENCHMARK_MIN_PARTNERS
            ),
            (Scope::All, false) => f.write_str("everyone (every partner and direct sales)"),
            (Scope::Partners(set), false) => write!(
                f,
                "partners {}",
                set.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            (Scope::Partner(own), false) => write!(f, "partner {own} (its own rows only)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(r: Result<Audience, EngineError>) -> bool {
        matches!(r, Err(EngineError::Forbidden(_)))
    }

    #[test]
    fn every_narrowing_outside_the_audience_is_forbidden() {
        let p1 = Audience::partner("P-1").unwrap();
        assert_eq!(p1.narrow_to("P-1").unwrap(), p1);
        assert!(forbidden(p1.narrow_to("P-2")));
        let cm = Audience::partners(["P-1".to_string(), "P-3".to_string()]);
        assert_eq!(cm.narrow_to("P-3").unwrap().own_partner(), Some("P-3"));
        assert!(forbidden(cm.narrow_to("P-2")));
        assert!(forbidden(Audience::partners([]).narrow_to("P-1")));
        assert!(forbidden(Audience::channel_benchmark().narrow_to("P-1")));
        assert_eq!(
            Audience::everyone().narrow_to("P-2").unwrap().own_partner(),
            Some("P-2")
        );
        assert!(forbidden(Audience::everyone().narrow_to("")));
    }

    #[test]
    fn a_partner_user_without_a_partner_has_no_audience() {
        assert!(forbidden(Audience::partner("")));
        assert!(forbidden(Audience::partner("  ")));
    }

    #[test]
    fn only_the_brand_owners_users_get_the_whole_channel() {
        assert!(
            Audience::everyone()
                .brand_owner_view()
                .unwrap()
                .is_everyone()
        );
        assert!(
            Audience::partners(["P-1".to_string()])
                .brand_owner_view()
                .unwrap()
                .is_everyone()
        );
        assert!(forbidden(
            Audience::partner("P-1").unwrap().brand_owner_view()
        ));
        assert!(forbidden(Audience::channel_benchmark().brand_owner_view()));
    }
}
