//! When an alert is evaluated: after every load, or on a cron schedule in a time zone.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::{DeliversError, Result};

/// When an alert is evaluated.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// After each load that commits a new warehouse version (and once when the alert is new).
    OnLoad,
    /// At the times of a cron expression (`0 7 * * *`: daily at 07:00; `0 7 * * MON`;
    /// `0 7 1 * *`: the first of the month), read in the time zone.
    Cron {
        /// The expression as given.
        expression: String,
        /// The expression parsed.
        cron: Box<Cron>,
        /// The time zone it is read in.
        zone: Tz,
    },
}

impl Schedule {
    /// `load`, or a cron expression of five fields with its IANA time zone
    /// (`Europe/Berlin`; `UTC`).
    pub fn parse(text: &str, time_zone: &str) -> Result<Schedule> {
        let zone = Tz::from_str(time_zone).map_err(|_| {
            DeliversError::Invalid(format!(
                "time zone {time_zone:?}: expected an IANA name such as UTC, Europe/Berlin or America/New_York"
            ))
        })?;
        let text = text.trim();
        if text == "load" {
            return Ok(Schedule::OnLoad);
        }
        if text.split_whitespace().count() != 5 {
            return Err(DeliversError::Invalid(format!(
                "schedule {text:?}: expected load, or a cron expression of five fields (minute hour day-of-month month day-of-week), such as \"0 7 * * MON\""
            )));
        }
        let cron = Cron::from_str(text)
            .map_err(|e| DeliversError::Invalid(format!("schedule {text:?}: {e}")))?;
        // A pattern that never comes (30 February) is refused now, not found silent later.
        if cron
            .find_next_occurrence(&Utc::now().with_timezone(&zone), false)
            .is_err()
        {
            return Err(DeliversError::Invalid(format!(
                "schedule {text:?}: no such time ever comes"
            )));
        }
        Ok(Schedule::Cron {
            expression: text.to_string(),
            cron: Box::new(cron),
            zone,
        })
    }

    /// As kept: `load` or the cron expression.
    pub fn expression(&self) -> String {
        match self {
            Schedule::OnLoad => "load".into(),
            Schedule::Cron { expression, .. } => expression.clone(),
        }
    }

    /// The time zone the expression is read in.
    pub fn time_zone(&self) -> &'static str {
        match self {
            Schedule::OnLoad => "UTC",
            Schedule::Cron { zone, .. } => zone.name(),
        }
    }

    /// The first time strictly after `after` (seconds since the epoch); none for `load`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<i64> {
        match self {
            Schedule::OnLoad => None,
            Schedule::Cron { cron, zone, .. } => cron
                .find_next_occurrence(&after.with_timezone(zone), false)
                .ok()
                .map(|t| t.timestamp()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_schedule_is_read_in_its_time_zone() {
        // Daily at 07:00 in Berlin is 06:00 UTC in winter and 05:00 UTC in summer.
        let daily = Schedule::parse("0 7 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            daily.next_after(at("2026-12-03T06:30:00Z")),
            Some(at("2026-12-04T06:00:00Z").timestamp())
        );
        assert_eq!(
            daily.next_after(at("2026-07-01T04:00:00Z")),
            Some(at("2026-07-01T05:00:00Z").timestamp())
        );
        // 2026-12-03 is a Thursday: the next Monday is the 7th.
        let mondays = Schedule::parse("0 7 * * MON", "UTC").unwrap();
        assert_eq!(
            mondays.next_after(at("2026-12-03T08:00:00Z")),
            Some(
                Utc.with_ymd_and_hms(2026, 12, 7, 7, 0, 0)
                    .unwrap()
                    .timestamp()
            )
        );
        let monthly = Schedule::parse("0 7 1 * *", "UTC").unwrap();
        assert_eq!(
            monthly.next_after(at("2026-12-01T07:00:00Z")),
            Some(at("2027-01-01T07:00:00Z").timestamp())
        );
        assert_eq!(
            Schedule::parse("load", "UTC")
                .unwrap()
                .next_after(at("2026-12-01T07:00:00Z")),
            None
        );
    }

    #[test]
    fn an_impossible_schedule_or_zone_is_refused_with_the_reason() {
        for (text, zone, says) in [
            ("0 7 30 2 *", "UTC", "no such time"),
            ("0 25 * * *", "UTC", "schedule"),
            ("daily", "UTC", "five fields"),
            ("0 7 * * *", "Mars/Olympus", "time zone"),
        ] {
            let e = Schedule::parse(text, zone).unwrap_err().to_string();
            assert!(e.contains(says), "{text} {zone}: {e}");
        }
    }
}
