//! Sending queued news: to the owner's inbox, the owner's e-mail address over SMTP, or a
//! webhook that receives the JSON signed with the alert's key.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use prism_web::store::{Delivery, Store};

use crate::{DeliversError, Result};

/// The SMTP server e-mail goes through (`prism serve --smtp smtp://HOST:PORT`).
#[derive(Clone, Debug)]
pub struct Smtp {
    /// `smtp://HOST[:PORT]` (plain, or STARTTLS with `starttls`), or `smtps://HOST[:PORT]`
    /// (TLS from the first byte).
    pub url: String,
    /// The sender's address.
    pub from: String,
    /// The SMTP user, when the server wants a sign-in.
    pub user: Option<String>,
    /// Its password (read from a file, never from the command line).
    pub password: Option<String>,
    /// Upgrade a `smtp://` connection with STARTTLS, and refuse a server that cannot.
    pub starttls: bool,
}

/// How news leaves the app.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// The SMTP server e-mail goes through; none: e-mail cannot be sent (it is logged failed).
    pub smtp: Option<Smtp>,
    /// A webhook or SMTP server that does not answer within this is a failed attempt.
    pub timeout: Duration,
    /// The wait before the first retry; each further retry waits twice as long.
    pub retry_after: Duration,
    /// Attempts before a delivery is given up and logged as failed.
    pub max_attempts: i64,
    /// The app's address, put at the end of each message (`prism serve --public-url`).
    pub link: Option<String>,
}

impl Default for Outbound {
    fn default() -> Outbound {
        Outbound {
            smtp: None,
            timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(30),
            max_attempts: 5,
            link: None,
        }
    }
}

/// A webhook's address: HTTPS, or HTTP to this machine only (a receiver beside the app), so
/// that figures never cross a network in the clear.
pub fn check_webhook_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| DeliversError::Invalid(format!("webhook {url:?}: {e}")))?;
    let local = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if local => Ok(()),
        _ => Err(DeliversError::Invalid(format!(
            "webhook {url:?}: an https:// address (http:// only to this machine)"
        ))),
    }
}

/// The signature a webhook receiver checks: `sha256=` and the hex HMAC-SHA256 of the body
/// under the alert's key.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

pub(crate) struct Sender {
    http: reqwest::Client,
    mailer: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

impl Sender {
    pub(crate) fn new(outbound: &Outbound) -> Result<Sender> {
        let http = reqwest::Client::builder()
            .timeout(outbound.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DeliversError::Invalid(format!("the webhook client: {e}")))?;
        let mailer = match &outbound.smtp {
            None => None,
            Some(smtp) => Some(mailer(smtp, outbound.timeout)?),
        };
        Ok(Sender { http, mailer })
    }

    /// One attempt at a delivery; the reason when it fails.
    pub(crate) async fn send(
        &self,
        store: &Store,
        delivery: &Delivery,
        secret: &str,
    ) -> std::result::Result<(), String> {
        match delivery.channel.as_str() {
            "inbox" => store
                .notify(&delivery.owner, &delivery.subject, &delivery.body)
                .map_err(|e| e.to_string()),
            "email" => {
                let to = store
                    .email(&delivery.owner)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{} has no e-mail address", delivery.owner))?;
                let (transport, from) = self
                    .mailer
                    .as_ref()
                    .ok_or("no SMTP server is configured (prism serve --smtp)")?;
                let to: Mailbox = to.parse().map_err(|e| format!("address {to:?}: {e}"))?;
                let builder = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&delivery.subject)
                    // One id per news: a mail client shows a repeat after a crash once.
                    .message_id(Some(format!("<{}@prism>", delivery.news_key)));
                let message = if delivery.files.is_empty() {
                    builder.body(delivery.body.clone())
                } else {
                    let mut parts =
                        MultiPart::mixed().singlepart(SinglePart::plain(delivery.body.clone()));
                    for f in &delivery.files {
                        let kind = ContentType::parse(&f.content_type)
                            .map_err(|e| format!("{}: {e}", f.name))?;
                        parts = parts.singlepart(
                            Attachment::new(f.name.clone()).body(f.bytes.clone(), kind),
                        );
                    }
                    builder.multipart(parts)
                }
                .map_err(|e| e.to_string())?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("the SMTP server: {e}"))
            }
            other => {
                let url = other
                    .strip_prefix("webhook:")
                    .ok_or_else(|| format!("unknown channel {other:?}"))?;
                let response = self
                    .http
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-prism-delivery", &delivery.news_key)
                    .header(
                        "x-prism-signature",
                        signature(secret, delivery.payload.as_bytes()),
                    )
                    .body(delivery.payload.clone())
                    .send()
                    .await
                    .map_err(|e| {
                        if e.is_timeout() {
                            format!("the webhook did not answer in time: {url}")
                        } else {
                            format!("the webhook {url}: {e}")
                        }
                    })?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("the webhook {url} answered {}", response.status()))
                }
            }
        }
    }
}

fn mailer(smtp: &Smtp, timeout: Duration) -> Result<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)> {
    let bad = |why: String| DeliversError::Invalid(format!("--smtp {:?}: {why}", smtp.url));
    let (implicit_tls, rest) = if let Some(rest) = smtp.url.strip_prefix("smtps://") {
        (true, rest)
    } else if let Some(rest) = smtp.url.strip_prefix("smtp://") {
        (false, rest)
    } else {
        return Err(bad(
            "expected smtp://HOST[:PORT] or smtps://HOST[:PORT]".into()
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            Some(
                p.parse::<u16>()
                    .map_err(|_| bad(format!("port {p:?} is not a number")))?,
            ),
        ),
        None => (rest, None),
    };
    if host.is_empty() {
        return Err(bad("no host".into()));
    }
    let mut builder = if implicit_tls {
        AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| bad(e.to_string()))?
    } else if smtp.starttls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| bad(e.to_string()))?
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
    };
    if let Some(port) = port {
        builder = builder.port(port);
    }
    if let (Some(user), Some(password)) = (&smtp.user, &smtp.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| DeliversError::Invalid(format!("--smtp-from {:?}: {e}", smtp.from)))?;
    Ok((builder.timeout(Some(timeout)).build(), from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_webhook_is_https_or_this_machine() {
        assert!(check_webhook_url("https://hooks.example.com/prism").is_ok());
        assert!(check_webhook_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_webhook_url("http://localhost/hook").is_ok());
        assert!(check_webhook_url("http://hooks.example.com/prism").is_err());
        assert!(check_webhook_url("ftp://127.0.0.1/x").is_err());
        assert!(check_webhook_url("not a url").is_err());
    }
}
