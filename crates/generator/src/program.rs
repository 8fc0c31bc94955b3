//! The partner program of the demo channel: campaigns, deal registrations, market development
//! funds and certifications.
//!
//! They follow partner quality the way a channel manager would expect: good partners run more
//! campaigns, get their registrations approved sooner and more often, claim the funds they were
//! approved, and keep their people certified; poor partners let certifications lapse and sell
//! lines nobody of theirs is certified for. Some paid campaigns source nothing at all. A separate
//! random stream draws all of it, so the seven files of the original contract stay as they were
//! for a seed.

use chrono::NaiveDate;
use rand::RngExt;
use rand_pcg::Pcg64Mcg;

use crate::{
    Customer, INDUSTRIES, Out, PRODUCT_LINES, Partner, Product, SIZES, first_day, io, last_day,
    money,
};
use prism_contract::Entity;

use crate::GenerateError;

const CHANNELS: &[&str] = &["Email", "Event", "Webinar", "Digital", "Telemarketing"];

/// A campaign as drawn, for the opportunities it sources and the funds that pay for it.
pub(crate) struct Campaign {
    pub id: String,
    /// Index into the partners; `None` for the brand owner's own campaigns.
    pub partner: Option<usize>,
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// Paid for, but sourced no pipeline: what the funds page must flag.
    pub sourced_nothing: bool,
    /// What it cost, in cents.
    pub budget_cents: i64,
}

/// Per partner, the campaigns it runs (and the brand owner's at the end), for sourcing.
pub(crate) struct Campaigns {
    pub all: Vec<Campaign>,
    by_partner: Vec<Vec<usize>>,
    brand: Vec<usize>,
}

impl Campaigns {
    /// A campaign that sources an opportunity of `partner` (or a direct one) created on
    /// `created`, if any: a live campaign of the partner, or of the brand owner.
    pub fn sourcing(
        &self,
        rng: &mut Pcg64Mcg,
        partner: Option<usize>,
        created: NaiveDate,
    ) -> Option<&Campaign> {
        // About a quarter of opportunities come from a campaign.
        if rng.random::<f64>() > 0.15 {
            return None;
        }
        let own = partner.map_or(&self.brand, |p| &self.by_partner[p]);
        let live = |i: &&usize| {
            let c = &self.all[**i];
            !c.sourced_nothing && c.start <= created && created <= c.end + chrono::Days::new(45)
        };
        let mine: Vec<&usize> = own.iter().filter(live).collect();
        let candidates = if mine.is_empty() || rng.random::<f64>() < 0.2 {
            self.brand.iter().filter(live).collect::<Vec<_>>()
        } else {
            mine
        };
        if candidates.is_empty() {
            return None;
        }
        Some(&self.all[*candidates[rng.random_range(0..candidates.len())]])
    }
}

/// Writes campaigns.csv: partners run campaigns in proportion to size and quality; the brand
/// owner runs its own.
pub(crate) fn campaigns(
    rng: &mut Pcg64Mcg,
    partners: &[Partner],
    products: &[Product],
    out: &mut Out,
) -> Result<Campaigns, GenerateError> {
    let (path, mut w) = out.writer(Entity::Campaigns)?;
    let days = (last_day() - first_day()).num_days();
    let mut all = Vec::new();
    let mut by_partner = vec![Vec::new(); partners.len()];
    let mut brand = Vec::new();
    let n_brand = 12 + partners.len() / 10;
    let owners = campaign_owners(partners, n_brand);
    for owner in owners {
        let id = format!("CA-{:05}", all.len() + 1);
        let start = first_day() + chrono::Days::new(rng.random_range(0..days as u64));
        let end = (start + chrono::Days::new(rng.random_range(7..120))).min(last_day());
        let product =
            (rng.random::<f64>() < 0.8).then(|| &products[rng.random_range(0..products.len())]);
        let industry = (rng.random::<f64>() < 0.6)
            .then(|| INDUSTRIES[rng.random_range(0..INDUSTRIES.len())].0);
        let size_band =
            (rng.random::<f64>() < 0.5).then(|| SIZES[rng.random_range(0..SIZES.len())].0);
        let channel = CHANNELS[rng.random_range(0..CHANNELS.len())];
        let quality = owner.map_or(0.7, |p| partners[p].quality);
        // Poor partners' campaigns more often produce nothing.
        let sourced_nothing = rng.random::<f64>() < 0.05 + 0.25 * (1.0 - quality);
        let size = owner.map_or(10.0, |p| partners[p].weight);
        let budget_cents =
            (rng.random_range(3_000.0..30_000.0) * (1.0 + size.sqrt())).round() as i64 * 100;
        let name = campaign_name(product, industry, channel);
        w.write_record([
            id.as_str(),
            &format!("{name}, {}", start.format("%b %Y")),
            owner.map_or("", |p| partners[p].id.as_str()),
            product.map_or("", |p| p.id.as_str()),
            industry.unwrap_or(""),
            size_band.unwrap_or(""),
            channel,
            &start.to_string(),
            &end.to_string(),
        ])
        .map_err(|e| io(&path, e))?;
        match owner {
            Some(p) => by_partner[p].push(all.len()),
            None => brand.push(all.len()),
        }
        all.push(Campaign {
            id,
            partner: owner,
            start,
            end,
            sourced_nothing,
            budget_cents,
        });
    }
    out.close(&path, w)?;
    Ok(Campaigns {
        all,
        by_partner,
        brand,
    })
}

/// Who runs each campaign, in order: a partner (better and bigger ones run more) or, `None`,
/// the brand owner (`n_brand` of them).
fn campaign_owners(partners: &[Partner], n_brand: usize) -> Vec<Option<usize>> {
    partners
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            let n = if p.weight == 0.0 || !p.active {
                0.0
            } else {
                (0.3 + 1.5 * p.quality) * (1.0 + 0.8 * p.weight.ln_1p())
            };
            std::iter::repeat_n(Some(i), n.round() as usize)
        })
        .chain(std::iter::repeat_n(None, n_brand))
        .collect::<Vec<_>>()
}

/// A campaign's name: its product line, industry and kind.
fn campaign_name(product: Option<&Product>, industry: Option<&str>, channel: &str) -> String {
    format!(
        "{} {} {}",
        product.map_or("Portfolio", |p| PRODUCT_LINES[p.line].0),
        industry.unwrap_or("all industries"),
        match channel {
            "Event" => "roadshow",
            "Webinar" => "webinar",
            "Email" => "mailing",
            "Digital" => "ads",
            _ => "call campaign",
        }
    )
}

/// Deal registrations, written as the opportunities are drawn: one per registered opportunity,
/// and some that never became one.
pub(crate) struct Registrations {
    path: std::path::PathBuf,
    w: csv::Writer<std::io::BufWriter<std::fs::File>>,
    pub rows: u64,
}

impl Registrations {
    pub fn start(out: &Out) -> Result<Registrations, GenerateError> {
        let (path, w) = out.writer(Entity::DealRegistrations)?;
        Ok(Registrations { path, w, rows: 0 })
    }

    /// A registration by `partner` of a deal with `customer`: approved (and then linked to its
    /// opportunity) more often and sooner by good partners.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &mut self,
        rng: &mut Pcg64Mcg,
        partner: &Partner,
        customer: &Customer,
        product: &Product,
        amount_cents: i64,
        created: NaiveDate,
        opportunity: Option<&str>,
    ) -> Result<(), GenerateError> {
        let submitted = (created + chrono::Days::new(rng.random_range(0..7))).min(last_day());
        let days_to_decide =
            1 + (rng.random::<f64>() * (3.0 + 25.0 * (1.0 - partner.quality))) as u64;
        let decided = submitted + chrono::Days::new(days_to_decide);
        let approve = 0.45 + 0.5 * partner.quality;
        let (status, decided_on, linked) = if decided > last_day() {
            ("Pending", None, None)
        } else if opportunity.is_none() && rng.random::<f64>() < 0.5 {
            // Approved but never pursued: the protection ran out.
            ("Expired", Some(decided), None)
        } else if rng.random::<f64>() < approve {
            ("Approved", Some(decided), opportunity)
        } else {
            ("Rejected", Some(decided), None)
        };
        self.rows += 1;
        self.w
            .write_record([
                format!("DR-{:07}", self.rows).as_str(),
                &partner.id,
                &customer.id,
                if rng.random::<f64>() < 0.05 {
                    ""
                } else {
                    &product.id
                },
                &money(amount_cents),
                &submitted.to_string(),
                &decided_on.map(|d| d.to_string()).unwrap_or_default(),
                status,
                linked.unwrap_or(""),
            ])
            .map_err(|e| io(&self.path, e))
    }

    pub fn finish(self, out: &mut Out) -> Result<u64, GenerateError> {
        out.close(&self.path, self.w)?;
        Ok(self.rows)
    }
}

/// Writes mdf_requests.csv: most partner campaigns ask for funds; good partners get more of
/// what they ask, claim it and are paid; recent requests wait for a decision.
pub(crate) fn mdf_requests(
    rng: &mut Pcg64Mcg,
    partners: &[Partner],
    campaigns: &Campaigns,
    out: &mut Out,
) -> Result<u64, GenerateError> {
    let (path, mut w) = out.writer(Entity::MdfRequests)?;
    let mut rows = 0u64;
    let mut requests: Vec<(usize, Option<&Campaign>, NaiveDate, i64)> = Vec::new();
    for c in &campaigns.all {
        let Some(p) = c.partner else { continue };
        if rng.random::<f64>() < 0.35 + 0.55 * partners[p].quality {
            let asked = c.start - chrono::Days::new(rng.random_range(5..40));
            requests.push((p, Some(c), asked.max(first_day()), c.budget_cents));
        }
    }
    // Funds asked for without a campaign (training, demo gear).
    for (i, p) in partners.iter().enumerate() {
        if p.active && p.weight > 0.0 && rng.random::<f64>() < 0.3 {
            let day = first_day()
                + chrono::Days::new(
                    rng.random_range(0..(last_day() - first_day()).num_days() as u64),
                );
            requests.push((i, None, day, rng.random_range(1_000..15_000) * 100));
        }
    }
    requests.sort_by_key(|r| r.2);
    for (p, campaign, asked, budget) in requests {
        let q = partners[p].quality;
        let requested = budget;
        let decided = asked + chrono::Days::new(rng.random_range(3..30));
        let (status, approved, claimed, paid) = if decided > last_day() {
            ("Submitted", None, None, None)
        } else if rng.random::<f64>() < 0.08 + 0.2 * (1.0 - q) {
            ("Rejected", Some(0), None, None)
        } else {
            let approved = (requested as f64 * (0.5 + 0.5 * q)).round() as i64 / 100 * 100;
            let over = campaign.is_none_or(|c| c.end + chrono::Days::new(30) <= last_day());
            if !over || rng.random::<f64>() > 0.4 + 0.55 * q {
                // Approved, and not claimed (yet, or ever: unused funds).
                ("Approved", Some(approved), None, None)
            } else {
                let claimed = (approved as f64 * rng.random_range(0.6..1.0)).round() as i64;
                if rng.random::<f64>() < 0.85 {
                    ("Paid", Some(approved), Some(claimed), Some(claimed))
                } else {
                    ("Claimed", Some(approved), Some(claimed), None)
                }
            }
        };
        rows += 1;
        w.write_record([
            format!("MDF-{rows:06}").as_str(),
            &partners[p].id,
            campaign.map_or("", |c| c.id.as_str()),
            &asked.to_string(),
            &money(requested),
            &approved.map(money).unwrap_or_default(),
            &claimed.map(money).unwrap_or_default(),
            &paid.map(money).unwrap_or_default(),
            status,
        ])
        .map_err(|e| io(&path, e))?;
    }
    out.close(&path, w)?;
    Ok(rows)
}

/// Writes certifications.csv: each partner's people and what they are certified for. Good
/// partners certify more people, on the lines they sell, and renew; poor ones let them lapse.
pub(crate) fn certifications(
    rng: &mut Pcg64Mcg,
    partners: &[Partner],
    lines_sold: &[Vec<bool>],
    out: &mut Out,
) -> Result<u64, GenerateError> {
    let (path, w) = out.writer(Entity::Certifications)?;
    let mut file = Certificates {
        path,
        w,
        rows: 0,
        person: 0,
    };
    for (i, p) in partners.iter().enumerate() {
        if p.weight == 0.0 {
            continue;
        }
        let sold: Vec<usize> = (0..PRODUCT_LINES.len())
            .filter(|l| lines_sold[i].get(*l).copied().unwrap_or(false))
            .collect();
        line_keepers(rng, p, &sold, &mut file)?;
        certified_people(rng, p, &sold, &mut file)?;
    }
    let Certificates { path, w, rows, .. } = file;
    out.close(&path, w)?;
    Ok(rows)
}

const TRACKS: [&str; 4] = ["Sales", "Presales", "Technical", "Support"];
const LEVELS: [&str; 3] = ["Associate", "Professional", "Expert"];

/// The earliest day a certification in the export was earned: two years before the first.
fn earliest_certification() -> NaiveDate {
    first_day() - chrono::Days::new(730)
}

/// The certifications file as it is written: its rows, and the people numbered so far.
struct Certificates {
    path: std::path::PathBuf,
    w: csv::Writer<std::io::BufWriter<std::fs::File>>,
    rows: u64,
    person: u64,
}

impl Certificates {
    /// The next person's id.
    fn person(&mut self) -> String {
        self.person += 1;
        format!("E-{:06}", self.person)
    }

    /// One certification, expiring two years after it was earned unless `expires` says else.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        partner: &Partner,
        person: &str,
        track: &str,
        line: &str,
        level: &str,
        earned: NaiveDate,
        expires: Option<NaiveDate>,
    ) -> Result<(), GenerateError> {
        self.rows += 1;
        self.w
            .write_record([
                format!("CE-{:07}", self.rows).as_str(),
                &partner.id,
                person,
                track,
                line,
                level,
                &earned.to_string(),
                &expires.map(|d| d.to_string()).unwrap_or_default(),
            ])
            .map_err(|e| io(&self.path, e))
    }
}

/// Each line a partner sells has, for a good partner usually, someone technical certified for
/// it who keeps the certification current.
fn line_keepers(
    rng: &mut Pcg64Mcg,
    p: &Partner,
    sold: &[usize],
    file: &mut Certificates,
) -> Result<(), GenerateError> {
    let earliest = earliest_certification();
    for &l in sold {
        if rng.random::<f64>() >= 0.25 + 0.7 * p.quality {
            continue;
        }
        let id = file.person();
        let track = TRACKS[2 + rng.random_range(0..2)];
        let mut earned = earliest + chrono::Days::new(rng.random_range(0..365));
        while earned <= last_day() {
            let level = LEVELS[rng.random_range(0..3)];
            let expires = earned + chrono::Days::new(730);
            file.write(
                p,
                &id,
                track,
                PRODUCT_LINES[l].0,
                level,
                earned,
                Some(expires),
            )?;
            // Renewed a little before it runs out, or (a poor partner) late or never.
            if rng.random::<f64>() > 0.3 + 0.65 * p.quality {
                break;
            }
            earned = earned + chrono::Days::new(rng.random_range(700..760));
        }
    }
    Ok(())
}

/// The partner's other certified people, more for bigger and better partners, each with one to
/// three certifications.
fn certified_people(
    rng: &mut Pcg64Mcg,
    p: &Partner,
    sold: &[usize],
    file: &mut Certificates,
) -> Result<(), GenerateError> {
    let earliest = earliest_certification();
    let span = (last_day() - earliest).num_days() as u64;
    let people = (1.0 + p.weight.sqrt() * (1.0 + 4.0 * p.quality)).round() as usize;
    for _ in 0..people {
        let id = file.person();
        let n = 1 + rng.random_range(0..3);
        for _ in 0..n {
            // Poor partners certify salespeople and skip the technical tracks.
            let technical = rng.random::<f64>() < 0.25 + 0.5 * p.quality;
            let track = if technical {
                TRACKS[2 + rng.random_range(0..2)]
            } else {
                TRACKS[rng.random_range(0..2)]
            };
            let line = if sold.is_empty() || rng.random::<f64>() < 0.15 {
                None
            } else {
                Some(PRODUCT_LINES[sold[rng.random_range(0..sold.len())]].0)
            };
            let earned = earliest + chrono::Days::new(rng.random_range(0..span));
            // Two years, and good partners' people renew: a later one replaces it.
            let expires = (rng.random::<f64>() < 0.85).then(|| earned + chrono::Days::new(730));
            let level = (rng.random::<f64>() < 0.9).then(|| LEVELS[rng.random_range(0..3)]);
            let (line, level) = (line.unwrap_or(""), level.unwrap_or(""));
            file.write(p, &id, track, line, level, earned, expires)?;
            if let Some(e) = expires
                && e <= last_day()
                && rng.random::<f64>() < 0.2 + 0.7 * p.quality
            {
                let renewed = e - chrono::Days::new(rng.random_range(0..30));
                let expires = Some(renewed + chrono::Days::new(730));
                file.write(p, &id, track, line, level, renewed, expires)?;
            }
        }
    }
    Ok(())
}
